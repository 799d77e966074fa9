"""Benchmark: the autoscaler when the sizing estimate of replica capacity is wrong, with and without measuring it.

Run: .venv/bin/python tests/bench/bench_capacity_error.py [--traces DIR] [--only NAME] [--error 0.25]
The rows of bench_autoscale.py (same traces, scale, replica and cold starts; the simulator always serves at the true
capacity). The policy is told a capacity 1 − e, 1 and 1 + e times the true one (sizing is calibrated within ±30 %,
README "Throughput model"), once measuring capacity from the running and KV-cache gauges (the default,
README "Measured capacity") and once trusting the estimate. Cells: cost ÷ SLO oracle / % of requests waiting longer
than the SLO. The last lines sum the misses and give the geometric mean of cost ÷ oracle per column.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from bench_autoscale import bench_rows, replica_model

from neuroscale.autoscale.baselines import NeuroscaleScaler
from neuroscale.autoscale.policy import default_config
from neuroscale.autoscale.simulator import opening_fleet, peak_replicas, run_oracle, simulate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "traces")
    parser.add_argument("--only", help="run only this trace label")
    parser.add_argument("--error", type=float, default=0.25, help="relative error of the estimate (default 0.25)")
    args = parser.parse_args()
    model, price, note = replica_model()
    factors = (1 - args.error, 1.0, 1 + args.error)
    columns = [(factor, measure) for factor in factors for measure in (False, True)]
    print(f"replica: {note}; SLO 10 s; the policy is told {' / '.join(f'{f:g}' for f in factors)} × the true "
          "capacity; 'trusted' uses that estimate, 'measured' corrects it from the gauges")
    header = f"{'trace':<13} {'cold':>5} " + " ".join(
        f"{f'{factor:g}× ' + ('measured' if measure else 'trusted'):>17}" for factor, measure in columns)
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    logs = [0.0] * len(columns)
    misses = [0.0] * len(columns)
    rows = 0
    for label, trace, settings in bench_rows(model, price, args.traces, args.only):
        cold = settings.cold_start_s
        oracle = run_oracle(trace, settings).metrics.replica_hours
        max_replicas = 2 * peak_replicas(trace, settings)
        # Every column starts from the fleet the true capacity needs for the opening demand, as bench_autoscale.py.
        initial = opening_fleet(trace, settings, default_config(model.decode_tokens_per_s, cold,
                                                                max_replicas=max_replicas))
        cells = []
        for index, (factor, measure) in enumerate(columns):
            config = default_config(model.decode_tokens_per_s * factor, cold, max_replicas=max_replicas,
                                    max_num_seqs=model.max_num_seqs, calibrate_capacity=measure)
            metrics = simulate(trace, NeuroscaleScaler(config), settings, initial).metrics
            logs[index] += math.log(metrics.replica_hours / oracle)
            misses[index] += 100 * metrics.slo_miss_fraction
            cells.append(f"{metrics.replica_hours / oracle:.3f}/{100 * metrics.slo_miss_fraction:7.3f}")
        rows += 1
        print(f"{label:<13} {cold:>5.0f} " + " ".join(f"{cell:>17}" for cell in cells), flush=True)
    print(f"{'geo-mean cost':<19} " + " ".join(f"{math.exp(total / max(rows, 1)):>17.3f}" for total in logs))
    print(f"{'sum of miss %':<19} " + " ".join(f"{total:>17.1f}" for total in misses))
    print(f"elapsed {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
