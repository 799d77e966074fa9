"""Benchmark: neuroscale's autoscaler vs HPA-style, KPA-style, static peak and the oracle on the shared traces.

Run: .venv/bin/python tests/bench/bench_autoscale.py [--traces DIR] [--plots DIR]
Both shared traces run at their real speed (no time compression, no repetition) with demand scaled so that the busiest
minute needs 20 replicas; the scale is printed per row. Prints one table and, per row, whether the targets hold:
neuroscale no worse than every reactive baseline on cost and under-provisioning (strictly better on one), and
within 25 % of the oracle's cost at under 1 % under-provisioned demand. Per row it also prints a hindsight
bound: the least under-provisioning any scaler that knew each 2-minute mean demand in advance (plus a constant
number of spare replicas) reaches at the cheapest reactive baseline's cost; if that bound is above the lowest
baseline under-provisioning, no causal scaler can beat both baselines on both figures on that row.
A second table replays synthetic Poisson traces (`traces.synthetic_trace`: diurnal, ramp, burst, step; lognormal
lengths; fixed seeds) the policy was never run on while its parameters were chosen.
`--fixed-utilization` turns the policy's queue feedback loop off (u stays 0.85), for a side-by-side comparison.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import numpy as np

from neuroscale.autoscale.policy import PolicyConfig, default_config
from neuroscale.autoscale.report import write_plot
from neuroscale.autoscale.simulator import SimulationSettings, compare, peak_replicas
from neuroscale.autoscale.traces import SYNTHETIC_SHAPES, DemandTrace, load_trace, synthetic_trace

TRACES = ("AzureLLMInferenceTrace_conv.csv", "servegen_mm-image_aggregate_10min.csv")
COLD_STARTS = (60.0, 300.0, 600.0)
PEAK_REPLICAS = 20
MODEL, INSTANCE, FALLBACK_CAPACITY, FALLBACK_PRICE = "hf://meta-llama/Llama-3.1-8B-Instruct", "inf2.8xlarge", 400.0, 1.96786


def replica_model() -> tuple[float, float, str]:
    try:
        from neuroscale.sizing import SizingRequest, size
    except ImportError:
        return FALLBACK_CAPACITY, FALLBACK_PRICE, f"{FALLBACK_CAPACITY:g} tok/s per replica (no sizing package)"
    result = size(SizingRequest(source=MODEL, instance_type=INSTANCE))
    return (result.tokens_per_second, result.price_per_hour or FALLBACK_PRICE,
            f"{MODEL} on {INSTANCE} (sizing: {result.tokens_per_second:.1f} tok/s, ${result.price_per_hour}/h)")


def hindsight_under_at(trace: DemandTrace, capacity: float, budget_replica_hours: float) -> float:
    """Least under-provisioned share with ceil(2-minute mean / capacity + k) replicas, k spent up to the budget."""
    per = 120
    usable = len(trace.tokens_per_s) // per * per
    windows = trace.tokens_per_s[:usable].reshape(-1, per)
    means = windows.mean(axis=1) / capacity
    best = 1.0
    for spare in np.arange(0.0, 10.0, 0.05):
        replicas = np.ceil(means + spare - 1e-9)
        hours = float(replicas.sum()) * per / 3600 * len(trace.tokens_per_s) / usable
        if hours > budget_replica_hours:
            break
        short = np.maximum(windows - replicas[:, None] * capacity, 0).sum() / windows.sum()
        best = min(best, float(short))
    return best


def policy_config(capacity: float, cold: float, max_replicas: int, trace: DemandTrace, fixed: bool) -> PolicyConfig:
    config = default_config(capacity, cold, max_replicas=max_replicas, tokens_per_request=trace.tokens_per_request)
    return dataclasses.replace(config, utilization_floor=None, utilization_ceiling=None) if fixed else config


def verdict(label: str, cold: float, runs: list, trace: DemandTrace, capacity: float) -> str:
    oracle = runs[-1].metrics.replica_hours
    ours = runs[0].metrics
    reactive = [r.metrics for r in runs if r.name in ("hpa", "kpa")]
    dominates = all(ours.replica_hours <= b.replica_hours and ours.underprovisioned_fraction
                    <= b.underprovisioned_fraction for b in reactive)
    near_oracle = ours.replica_hours <= 1.25 * oracle and ours.underprovisioned_fraction < 0.01
    ambition = ours.replica_hours <= 1.10 * oracle and ours.underprovisioned_fraction < 0.005
    bound = hindsight_under_at(trace, capacity, min(b.replica_hours for b in reactive))
    lowest = min(b.underprovisioned_fraction for b in reactive)
    feasible = "within" if bound <= lowest else "BEYOND"
    return (f"{label:<14} cold {cold:>4.0f}s: beats every reactive baseline on both: "
            f"{'yes' if dominates else 'NO'}; within 25% of oracle at <1%: {'yes' if near_oracle else 'NO'}; "
            f"ambition 10% at <0.5%: {'yes' if ambition else 'no'}; hindsight bound at cheapest baseline cost "
            f"{100 * bound:.3f}% vs lowest baseline {100 * lowest:.3f}% -> beating both is {feasible} that bound")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "traces")
    parser.add_argument("--plots", type=Path, help="write one PNG per row here")
    parser.add_argument("--fixed-utilization", action="store_true", help="turn the queue feedback loop off")
    args = parser.parse_args()
    capacity, price, note = replica_model()
    sample = default_config(capacity, 60.0)
    loop = ("fixed utilization 0.85 (feedback loop off)" if args.fixed_utilization else
            f"utilization learned from the queue in [{sample.utilization_floor:.2f}, "
            f"{sample.utilization_ceiling:.2f}], starting at {sample.utilization:.2f}")
    print(f"replica: {note}; {loop}; scrape/control 15 s; rate over 2 m; real time, no repetition")
    header = (f"{'trace':<10} {'scale':>6} {'cold':>5} {'scaler':<12} {'replica-h':>9} {'$':>9} {'vs oracle':>9} "
              f"{'under %':>8} {'under min':>9} {'actions':>7}")
    print(header)
    print("-" * len(header))
    verdicts, started = [], time.perf_counter()
    for name in TRACES:
        raw = load_trace(args.traces / name)
        trace = raw.scaled(PEAK_REPLICAS * capacity / raw.peak(60))
        label = "azure-1h" if raw.format == "azure" else "servegen-24h"
        for cold in COLD_STARTS:
            settings = SimulationSettings(capacity, cold, price_per_hour=price)
            max_replicas = 2 * peak_replicas(trace, settings)
            runs = compare(trace, settings, policy_config(capacity, cold, max_replicas, trace, args.fixed_utilization))
            oracle = runs[-1].metrics.replica_hours
            for run in runs:
                m = run.metrics
                print(f"{label:<10} {trace.scale:>6.2f} {cold:>5.0f} {run.name:<12} {m.replica_hours:>9.2f} "
                      f"{m.cost or 0:>9.2f} {100 * (m.replica_hours / oracle - 1):>+8.1f}% "
                      f"{100 * m.underprovisioned_fraction:>8.3f} {m.underprovisioned_minutes:>9.1f} {m.actions:>7d}")
            print()
            verdicts.append(verdict(label, cold, runs, trace, capacity))
            if args.plots:
                args.plots.mkdir(parents=True, exist_ok=True)
                write_plot(trace, settings, runs, args.plots / f"{label}-cold{cold:.0f}.png")
    print("\n".join(verdicts))
    print()
    synthetic_table(capacity, price, args.fixed_utilization)
    print(f"elapsed {time.perf_counter() - started:.1f} s")
    return 0


def synthetic_table(capacity: float, price: float, fixed: bool) -> None:
    """Cost vs oracle / under-provisioned % of neuroscale, HPA and KPA on each synthetic shape and cold start."""
    print("synthetic traces (seed 1, Poisson arrivals, lognormal lengths, busiest minute = 20 replicas): "
          "cost vs oracle / under-provisioned %")
    header = f"{'shape':<8} {'cold':>5} {'neuroscale':>17} {'hpa':>17} {'kpa':>17}  beats both"
    print(header)
    print("-" * len(header))
    wins = 0
    rows = 0
    for shape in SYNTHETIC_SHAPES:
        raw = synthetic_trace(shape, seed=1)
        trace = raw.scaled(PEAK_REPLICAS * capacity / raw.peak(60))
        for cold in COLD_STARTS:
            settings = SimulationSettings(capacity, cold, price_per_hour=price)
            config = policy_config(capacity, cold, 2 * peak_replicas(trace, settings), trace, fixed)
            runs = compare(trace, settings, config)
            oracle = runs[-1].metrics.replica_hours
            cells = {r.name: f"{100 * (r.metrics.replica_hours / oracle - 1):+6.1f}%/{100 * r.metrics.underprovisioned_fraction:6.3f}"
                     for r in runs}
            ours = runs[0].metrics
            beats = all(ours.replica_hours <= r.metrics.replica_hours and ours.underprovisioned_fraction
                        <= r.metrics.underprovisioned_fraction for r in runs if r.name in ("hpa", "kpa"))
            wins += beats
            rows += 1
            print(f"{shape:<8} {cold:>5.0f} {cells['neuroscale']:>17} {cells['hpa']:>17} {cells['kpa']:>17}  "
                  f"{'yes' if beats else 'no'}")
    print(f"neuroscale beats both reactive baselines on both figures on {wins} of {rows} synthetic rows")


if __name__ == "__main__":
    sys.exit(main())
