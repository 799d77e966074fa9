"""The throughput model against every published Neuron figure it is calibrated on: published, the estimate before
this calibration, the estimate now, and the relative errors; with --fit, the least-squares refit of its constants.

Run: .venv/bin/python tests/bench/throughput_calibration.py [--fit]
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from neuroscale.sizing.throughput import CALIBRATED, ThroughputModel  # noqa: E402
from tests.support.neuron_published import PublishedRow, load  # noqa: E402

FIELDS = [f.name for f in dataclasses.fields(ThroughputModel)]


def residuals(model: ThroughputModel, rows: list[PublishedRow]) -> list[float]:
    """Log errors: throughput on every row, plus time per output token and (unqueued, batch 1) time to first
    token where published, at half weight: they pin prefill and decode apart where throughput alone cannot."""
    found = []
    for row in rows:
        est = row.estimate(model)
        found.append(math.log(est.tokens_per_second / row.tokens_per_second))
        if row.tpot_ms is not None:
            found.append(0.5 * math.log(est.time_per_output_token_seconds * 1e3 / row.tpot_ms))
        if row.ttft_ms is not None and row.batch == 1:
            found.append(0.5 * math.log(est.time_to_first_token_seconds * 1e3 / row.ttft_ms))
    return found


def fit(rows: list[PublishedRow]) -> ThroughputModel:
    """Every constant but the bandwidth efficiency, which stays at its physical value (see the model's docstring)."""
    from scipy.optimize import least_squares

    free = [f for f in FIELDS if f != "bandwidth_efficiency"]

    def model(x: list[float]) -> ThroughputModel:
        return dataclasses.replace(CALIBRATED, **{f: math.exp(v) for f, v in zip(free, x)})

    result = least_squares(lambda x: residuals(model(x), rows), [math.log(getattr(CALIBRATED, f)) for f in free])
    return model(result.x)


def table(model: ThroughputModel, rows: list[PublishedRow]) -> str:
    lines = [f"{'row':40} {'published':>9} {'before':>8} {'err':>6} {'now':>8} {'err':>6} "
             f"{'TPOT ms pub/now':>16} {'TTFT ms pub/now':>16}"]
    for row in rows:
        est = row.estimate(model)
        tpot = f"{row.tpot_ms:.1f}/{est.time_per_output_token_seconds * 1e3:.1f}" if row.tpot_ms else "-"
        ttft = f"{row.ttft_ms:.0f}/{est.time_to_first_token_seconds * 1e3:.0f}" if row.ttft_ms and row.batch == 1 else "-"
        lines.append(f"{row.id:40} {row.tokens_per_second:9.1f} {row.before:8.1f} "
                     f"{row.before / row.tokens_per_second - 1:+6.0%} {est.tokens_per_second:8.1f} "
                     f"{row.error(model):+6.0%} {tpot:>16} {ttft:>16}")
    before = [abs(r.before / r.tokens_per_second - 1) for r in rows]
    now = [abs(r.error(model)) for r in rows]
    lines.append(f"max |error|: before {max(before):.0%}, now {max(now):.0%}; "
                 f"mean |error|: before {sum(before) / len(before):.0%}, now {sum(now) / len(now):.0%}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fit", action="store_true", help="refit the constants and print them with their table")
    args = parser.parse_args()
    sources, rows = load()
    model = fit(rows) if args.fit else CALIBRATED
    if args.fit:
        print("ThroughputModel(" + ", ".join(f"{f}={getattr(model, f):.4g}" for f in FIELDS) + ")")
    print(table(model, rows))
    print("\nsources:")
    for key, text in sources.items():
        print(f"  {key}: {text}")


if __name__ == "__main__":
    main()
