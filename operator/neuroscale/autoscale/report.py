"""Simulation results as a text table, a JSON document and a PNG plot of demand against ready capacity."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from neuroscale.autoscale.policy import PolicyConfig
from neuroscale.autoscale.simulator import ScalerRun, SimulationSettings
from neuroscale.autoscale.traces import DemandTrace

__all__ = ["DEFINITIONS", "format_table", "to_document", "write_json", "write_plot"]

DEFINITIONS = {
    "replica_hours": "replica-seconds paid / 3600; a replica is paid from the moment it is asked for (its cold "
                     "start included) until it is removed",
    "cost_usd": "replica_hours x the instance's on-demand price per hour",
    "underprovisioned_demand_pct": "100 x sum over seconds of max(0, demand - ready capacity) / sum of demand: "
                                   "the share of generated tokens asked for when no ready capacity was free",
    "underprovisioned_minutes": "minutes in which demand exceeded ready capacity",
    "scaling_actions": "number of control decisions that changed the replica count",
    "peak_replicas": "most replicas paid for at once",
    "max_queue_wait_s": "longest time the queued tokens would take to drain at the ready capacity of that second",
    "oracle": "the cheapest schedule that serves every second's demand at full replica capacity, knowing the "
              "future: each replica is started one cold start before it is needed and kept through gaps "
              "shorter than a cold start; the limit any causal scaler is measured against",
    "vs_oracle_cost_pct": "100 x (replica_hours / oracle replica_hours - 1)",
}


def _trace_facts(trace: DemandTrace, settings: SimulationSettings) -> dict[str, Any]:
    demand = trace.tokens_per_s
    return {
        "name": trace.name,
        "format": trace.format,
        "duration_s": trace.duration_s,
        "scale": round(trace.scale, 4),
        "mean_tokens_per_s": round(float(demand.mean()), 2),
        "peak_tokens_per_s_60s": round(trace.peak(60), 2),
        "peak_tokens_per_s_1s": round(float(demand.max()), 2),
        "tokens_per_request": round(trace.tokens_per_request, 2),
        "requests": trace.requests,
        "peak_replicas_needed_60s": round(trace.peak(60) / settings.capacity_tokens_per_s, 2),
    }


def to_document(trace: DemandTrace, settings: SimulationSettings, config: PolicyConfig,
                runs: Sequence[ScalerRun]) -> dict[str, Any]:
    """Everything one comparison found, JSON-ready."""
    oracle_hours = next((r.metrics.replica_hours for r in runs if r.name == "oracle"), None)
    results = {}
    for run in runs:
        row: dict[str, Any] = run.metrics.to_dict()
        if oracle_hours:
            row["vs_oracle_cost_pct"] = round(100 * (run.metrics.replica_hours / oracle_hours - 1), 2)
        results[run.name] = row
    return {
        "trace": _trace_facts(trace, settings),
        "settings": dataclasses.asdict(settings),
        "policy": dataclasses.asdict(config),
        "results": results,
        "definitions": DEFINITIONS,
    }


def write_json(document: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def format_table(runs: Sequence[ScalerRun]) -> str:
    """One line per scaler: the figures the README defines."""
    oracle_hours = next((r.metrics.replica_hours for r in runs if r.name == "oracle"), None)
    header = f"{'scaler':<12} {'replica-h':>10} {'$':>9} {'vs oracle':>9} {'under %':>8} {'under min':>9} " \
             f"{'actions':>7} {'max wait s':>10}"
    lines = [header, "-" * len(header)]
    for run in runs:
        m = run.metrics
        cost = "n/a" if m.cost is None else f"{m.cost:,.2f}"
        versus = f"{100 * (m.replica_hours / oracle_hours - 1):+.1f}%" if oracle_hours else "n/a"
        lines.append(f"{run.name:<12} {m.replica_hours:>10,.2f} {cost:>9} {versus:>9} "
                     f"{100 * m.underprovisioned_fraction:>8.3f} {m.underprovisioned_minutes:>9.1f} "
                     f"{m.actions:>7d} {m.max_queue_wait_s:>10.1f}")
    return "\n".join(lines)


def _bucket(values: np.ndarray, per: int) -> np.ndarray:
    usable = len(values) // per * per
    return values[:usable].reshape(-1, per).mean(axis=1) if usable else values


def write_plot(trace: DemandTrace, settings: SimulationSettings, runs: Sequence[ScalerRun], path: Path) -> None:
    """Demand and every scaler's ready capacity over time (top), and replicas paid for (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = max(1, int(len(trace.tokens_per_s) // 2000))
    hours = trace.duration_s > 3 * 3600
    unit, divisor = ("hours", 3600.0) if hours else ("minutes", 60.0)
    times = _bucket(np.arange(len(trace.tokens_per_s)) * trace.step_s, per) / divisor
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(12, 7.5), sharex=True,
                                         gridspec_kw={"height_ratios": [3, 2]})
    top.plot(times, _bucket(trace.tokens_per_s, per), color="black", linewidth=0.8, label="demand")
    for run in runs:
        style = {"linestyle": "--"} if run.name in ("oracle", "static-peak") else {}
        top.plot(times, _bucket(run.ready * settings.capacity_tokens_per_s, per), linewidth=1.1,
                 label=f"{run.name} ready capacity", **style)
        bottom.plot(times, _bucket(run.paid, per), linewidth=1.1, label=run.name, **style)
    top.set_ylabel("generated tokens/s")
    top.set_title(f"{trace.name} (demand ×{trace.scale:.2f}), cold start {settings.cold_start_s:g}s, "
                  f"{settings.capacity_tokens_per_s:.0f} tok/s per replica")
    top.legend(loc="upper left", fontsize=8, ncol=3)
    bottom.set_ylabel("replicas paid for")
    bottom.set_xlabel(unit)
    bottom.legend(loc="upper left", fontsize=8, ncol=5)
    for axis in (top, bottom):
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
