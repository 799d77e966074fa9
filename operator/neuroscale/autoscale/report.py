"""Simulation results as a text table, a JSON document with the per-step series, and a PNG plot."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuroscale.autoscale.policy import PolicyConfig
from neuroscale.autoscale.simulator import ScalerRun, SimulationSettings, demand_work
from neuroscale.autoscale.traces import DemandTrace

__all__ = ["DEFINITIONS", "format_table", "to_document", "write_json", "write_plot"]

DEFINITIONS = {
    "work": "generated tokens + prompt tokens x prefill_cost (generated-token equivalents; a replica serves "
            "capacity_tokens_per_s of it per second)",
    "replica_hours": "replica-seconds paid / 3600; a replica is paid from the moment it is asked for (its cold "
                     "start included) until it is removed",
    "cost_usd": "replica_hours x the instance's on-demand price per hour",
    "wait_p50_s": "work-weighted median queueing delay: work queues first come first served at the ready capacity "
                  "of each second; a second's delay is how long its last work waits after the second ends",
    "wait_p99_s": "work-weighted 99th percentile of the same queueing delay",
    "slo_miss_pct": "100 x requests arriving in a second whose queueing delay exceeds the SLO / all requests",
    "max_wait_s": "longest queueing delay of any second",
    "shortfall_pct": "100 x sum over seconds of max(0, work - ready capacity) / sum of work (secondary: work that "
                     "had to queue, however briefly)",
    "scaling_actions": "number of control decisions that changed the replica count",
    "peak_replicas": "most replicas paid for at once",
    "oracle": "the SLO oracle: hindsight schedule in which no work waits longer than the SLO; service follows the "
              "smoothest feasible cumulative curve (taut string between arrivals and arrivals SLO seconds "
              "earlier), each second gets the fewest replicas that keep service on it, and each replica is "
              "asked for one cold start before it is needed and kept through gaps shorter than a cold start",
    "reactive-floor": "an idealised causal scaler: every second it knows the demand level (mean work of the last SLO "
                      "seconds) and the queued work exactly, orders at once the replicas for that level plus "
                      "draining the queue within the SLO, gets them one cold start later, releases at once; no "
                      "foresight, no standing headroom",
    "vs_oracle_cost": "replica_hours / oracle replica_hours",
    "series": "time_s: start of each step; generated_tokens_per_s, prompt_tokens_per_s, requests_per_s: demand "
              "arriving in each step; ready_replicas[scaler]: replicas serving in each step. With settings "
              "(capacity_tokens_per_s, prefill_tokens_per_s, slo_s) every figure above can be recomputed",
}


def _trace_facts(trace: DemandTrace, settings: SimulationSettings) -> dict[str, Any]:
    demand = trace.tokens_per_s
    return {
        "name": trace.name,
        "format": trace.format,
        "duration_s": trace.duration_s,
        "scale": round(trace.scale, 4),
        "mean_tokens_per_s": round(float(demand.mean()), 2),
        "mean_prompt_tokens_per_s": round(float(trace.prompt_tokens_per_s.mean()), 2),  # type: ignore[union-attr]
        "peak_work_per_s_60s": round(trace.peak(60, settings.prefill_cost), 2),
        "tokens_per_request": round(trace.tokens_per_request, 2),
        "prompt_tokens_per_request": round(trace.prompt_per_request, 2),
        "requests": trace.requests,
        "peak_replicas_needed_60s": round(trace.peak(60, settings.prefill_cost) / settings.capacity_tokens_per_s, 2),
    }


def _series(trace: DemandTrace, runs: Sequence[ScalerRun]) -> dict[str, Any]:
    def rounded(values: np.ndarray) -> list[float]:
        return [round(float(v), 3) for v in values]

    return {
        "time_s": rounded(np.arange(len(trace.tokens_per_s)) * trace.step_s),
        "generated_tokens_per_s": rounded(trace.tokens_per_s),
        "prompt_tokens_per_s": rounded(trace.prompt_tokens_per_s),  # type: ignore[arg-type]
        "requests_per_s": rounded(trace.requests_per_s),  # type: ignore[arg-type]
        "ready_replicas": {run.name: run.ready.astype(int).tolist() for run in runs},
    }


def to_document(trace: DemandTrace, settings: SimulationSettings, config: PolicyConfig,
                runs: Sequence[ScalerRun]) -> dict[str, Any]:
    """Everything one comparison found, JSON-ready, with the per-step series behind every figure."""
    oracle_hours = next((r.metrics.replica_hours for r in runs if r.name == "oracle"), None)
    results = {}
    for run in runs:
        row: dict[str, Any] = run.metrics.to_dict()
        if oracle_hours:
            row["vs_oracle_cost"] = round(run.metrics.replica_hours / oracle_hours, 4)
        results[run.name] = row
    settings_doc = dataclasses.asdict(settings)
    settings_doc["prefill_cost"] = settings.prefill_cost
    if not np.isfinite(settings.prefill_tokens_per_s):
        settings_doc["prefill_tokens_per_s"] = None  # JSON has no infinity: prompts cost nothing
    return {
        "trace": _trace_facts(trace, settings),
        "settings": settings_doc,
        "policy": dataclasses.asdict(config),
        "results": results,
        "definitions": DEFINITIONS,
        "series": _series(trace, runs),
    }


def write_json(document: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(document, indent=1, sort_keys=False, allow_nan=False) + "\n", encoding="utf-8")


def format_table(runs: Sequence[ScalerRun], slo_s: float) -> str:
    """One line per scaler: the headline figures (queueing delay, SLO misses, cost) and the secondary ones."""
    oracle_hours = next((r.metrics.replica_hours for r in runs if r.name == "oracle"), None)
    header = (f"{'scaler':<12} {'wait p50 s':>10} {'wait p99 s':>10} {f'>{slo_s:g}s %':>9} {'replica-h':>10} "
              f"{'$':>9} {'÷ oracle':>8} {'short %':>8} {'max wait s':>10} {'actions':>7}")
    lines = [header, "-" * len(header)]
    for run in runs:
        m = run.metrics
        cost = "n/a" if m.cost is None else f"{m.cost:,.2f}"
        versus = f"{m.replica_hours / oracle_hours:.3f}" if oracle_hours else "n/a"
        lines.append(f"{run.name:<12} {m.wait_p50_s:>10.1f} {m.wait_p99_s:>10.1f} {100 * m.slo_miss_fraction:>9.3f} "
                     f"{m.replica_hours:>10,.2f} {cost:>9} {versus:>8} {100 * m.shortfall_fraction:>8.3f} "
                     f"{m.max_wait_s:>10.1f} {m.actions:>7d}")
    return "\n".join(lines)


def _bucket(values: np.ndarray, per: int, how: str = "mean") -> np.ndarray:
    usable = len(values) // per * per
    if not usable:
        return values
    shaped = values[:usable].reshape(-1, per)
    return shaped.max(axis=1) if how == "max" else shaped.mean(axis=1)


def write_plot(trace: DemandTrace, settings: SimulationSettings, runs: Sequence[ScalerRun], path: Path) -> None:
    """Demand and every scaler's ready capacity (top), queueing delay (middle), replicas paid for (bottom).

    The legend sits to the right of the axes, off the data.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    work = demand_work(trace, settings)
    per = max(1, int(len(work) // 2000))
    hours = trace.duration_s > 3 * 3600
    unit, divisor = ("hours", 3600.0) if hours else ("minutes", 60.0)
    times = _bucket(np.arange(len(work)) * trace.step_s, per) / divisor
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(13, 9), sharex=True,
                                                 gridspec_kw={"height_ratios": [3, 2, 2]})
    top.plot(times, _bucket(work, per), color="black", linewidth=0.8, label="demand (work)")
    for run in runs:
        style = {"linestyle": "--"} if run.name in ("oracle", "static-peak") else {}
        top.plot(times, _bucket(run.ready * settings.capacity_tokens_per_s, per), linewidth=1.1,
                 label=f"{run.name}", **style)
        middle.plot(times, _bucket(np.where(np.isfinite(run.wait_s), run.wait_s, trace.duration_s), per, "max"),
                    linewidth=1.0, **style)
        bottom.plot(times, _bucket(run.paid, per), linewidth=1.1, **style)
    middle.axhline(settings.slo_s, color="grey", linewidth=0.8, linestyle=":", label=f"SLO {settings.slo_s:g}s")
    middle.set_yscale("symlog", linthresh=max(settings.slo_s, 1.0))
    top.set_ylabel("work tokens/s (ready capacity)")
    top.set_title(f"{trace.name} (demand ×{trace.scale:.2f}), cold start {settings.cold_start_s:g}s, "
                  f"{settings.capacity_tokens_per_s:.0f} tok/s per replica, SLO {settings.slo_s:g}s")
    middle.set_ylabel("queueing delay s")
    bottom.set_ylabel("replicas paid for")
    bottom.set_xlabel(unit)
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, title="ready capacity")
    middle.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    for axis in (top, middle, bottom):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
