"""What-if benchmark: the autoscaler with overflow bridging to a Bedrock tier (`autoscale/bridge.py`).

Run: .venv/bin/python tests/bench/bench_bridge.py [--traces DIR] [--only NAME] [--prompt-price 0.80]
     [--completion-price 4.00]
The rows of bench_autoscale.py. The gateway today bridges only a tier scaled to zero; this measures what bridging a
fleet's overflow would be worth: work joins the fleet's queue only while the ready replicas serve it within the SLO,
the rest goes at once to the bridge tier, billed per token (defaults: Claude 3.5 Haiku on Bedrock, the bridge of
examples/scale-to-zero-bedrock-bridge.yaml, $0.80 per million prompt and $4.00 per million generated tokens). Each
schedule is the one the scaler chose without the bridge (with a bridge it would see a shorter queue); the SLO is met
by construction, so a cell is (replica $ + bridge $) ÷ the SLO oracle's replica $ / % of the tokens bridged. Two
scalers: neuroscale as configured (learned headroom), and neuroscale with its headroom capped at zero: replicas for
the demand at full capacity and nothing spare, which leaves every burst to the bridge.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

from bench_autoscale import bench_rows, replica_model

from neuroscale.autoscale.baselines import NeuroscaleScaler
from neuroscale.autoscale.bridge import overflow_bridge
from neuroscale.autoscale.policy import default_config
from neuroscale.autoscale.simulator import demand_work, opening_fleet, peak_replicas, run_oracle, simulate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "traces")
    parser.add_argument("--only", help="run only this trace label")
    parser.add_argument("--prompt-price", type=float, default=0.80, help="bridge $ per million prompt tokens")
    parser.add_argument("--completion-price", type=float, default=4.00, help="bridge $ per million generated tokens")
    args = parser.parse_args()
    model, price, note = replica_model()
    print(f"replica: {note}; SLO 10 s; bridge ${args.prompt_price:g} / ${args.completion_price:g} per million prompt / "
          "generated tokens; cells: (replica $ + bridge $) ÷ oracle $ / % of tokens bridged, and in brackets the "
          "same schedule's cost ÷ oracle / % of requests over the SLO without a bridge")
    header = (f"{'trace':<13} {'cold':>5} {'neuroscale + bridge':>21} {'(no bridge)':>17} "
              f"{'no spare + bridge':>21} {'(no bridge)':>17}")
    print(header)
    print("-" * len(header))
    started = time.perf_counter()
    rows = 0
    logs = [0.0, 0.0]
    for label, trace, settings in bench_rows(model, price, args.traces, args.only):
        cold = settings.cold_start_s
        oracle = run_oracle(trace, settings).metrics.replica_hours * price
        work = demand_work(trace, settings)
        config = default_config(model.decode_tokens_per_s, cold, max_replicas=2 * peak_replicas(trace, settings),
                                max_num_seqs=model.max_num_seqs)
        initial = opening_fleet(trace, settings, config)
        cells = []
        for index, scaled in enumerate((config, dataclasses.replace(config, headroom_cap=0.0))):
            run = simulate(trace, NeuroscaleScaler(scaled), settings, initial)
            bridged = overflow_bridge(work, trace.tokens_per_s, trace.prompt_tokens_per_s,  # type: ignore[arg-type]
                                      run.ready, settings.capacity_tokens_per_s, settings.slo_s, trace.step_s,
                                      prompt_price_per_million=args.prompt_price,
                                      generated_price_per_million=args.completion_price)
            total_tokens = float((trace.tokens_per_s + trace.prompt_tokens_per_s).sum()) * trace.step_s  # type: ignore[operator]
            share = (bridged.bridged_prompt_tokens + bridged.bridged_generated_tokens) / total_tokens
            ratio = (run.metrics.replica_hours * price + bridged.bridge_cost) / oracle
            logs[index] += math.log(ratio)
            cells.append(f"{ratio:.3f}/{100 * share:6.2f}")
            cells.append(f"({run.metrics.replica_hours * price / oracle:.3f}/{100 * run.metrics.slo_miss_fraction:6.2f})")
        rows += 1
        print(f"{label:<13} {cold:>5.0f} {cells[0]:>21} {cells[1]:>17} {cells[2]:>21} {cells[3]:>17}", flush=True)
    print(f"geometric mean of (replica $ + bridge $) ÷ oracle $: neuroscale {math.exp(logs[0] / max(rows, 1)):.3f}, "
          f"no spare {math.exp(logs[1] / max(rows, 1)):.3f}; elapsed {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
