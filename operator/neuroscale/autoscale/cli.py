"""`neuroscale simulate`: replay a request trace through the autoscaler and its baselines, print and save results."""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path
from typing import Any

from neuroscale.autoscale.capacity import replica_model_from_sizing
from neuroscale.autoscale.policy import default_config
from neuroscale.autoscale.report import format_table, to_document, write_json, write_plot
from neuroscale.autoscale.simulator import SimulationSettings, compare, peak_replicas
from neuroscale.autoscale.traces import DEFAULT_DECODE_TOKENS_PER_S, FORMATS, load_trace
from neuroscale.cli import (InputError, float_in, int_in, max_num_seqs_type, price_per_hour_type,
                            tokens_per_s_type)
from neuroscale.sizing import SizingRequest, get_instance, size

__all__ = ["add_parser", "main"]

AUTO_SCALE_PEAK_REPLICAS = 20
# The simulator's work grows with replicas: the oracle plans one level per replica over the whole trace, and every
# scaler keeps a list of its replicas. `--scale auto` asks for 20 at the busiest minute; 1000 is fifty times that.
MAX_REPLICAS = 1000

# Bounds checked while the command line is parsed; the trace's own bounds (size, span) are in traces.py.
_cold_start_type = float_in(0.0, 86_400.0)  # a day; a Neuron replica's cold start is minutes
_utilization_type = float_in(0.0, 1.0, low_open=True)
_replicas_type = int_in(0, MAX_REPLICAS)
_max_replicas_type = int_in(1, MAX_REPLICAS)
_decode_speed_type = float_in(0.0, 1e6, low_open=True)  # one sequence; real ones decode at tens of tokens/s
# The simulator steps once a second and the policy's rate window is 120 s, which needs at least two scrapes in it;
# a scrape below a second would also make the opening history 120 / interval samples long.
_scrape_interval_type = float_in(1.0, 60.0)
_control_interval_type = float_in(1.0, 3_600.0)
_positive_scale = float_in(0.0, 1e12, low_open=True)
_slo_type = float_in(0.0, 3_600.0)

EXAMPLE = """example:
  neuroscale simulate --trace AzureLLMInferenceTrace_conv.csv --cold-start 300 \\
      --model hf://meta-llama/Llama-3.1-8B-Instruct --instance-type inf2.8xlarge --out out/sim
  neuroscale simulate --trace servegen_mm-image_aggregate_10min.csv --capacity 400 --scale 4 --no-plot
"""


def _scale(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        return _positive_scale(text)
    except argparse.ArgumentTypeError as err:
        raise argparse.ArgumentTypeError(f"{err} (or 'auto')") from None


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `simulate` on the `neuroscale` command line."""
    parser = subparsers.add_parser(
        "simulate", help="replay a request trace through the autoscaler and its baselines",
        description="Replay a request trace through the neuroscale autoscaling policy, KEDA + HPA and Knative's "
                    "KPA, static peak provisioning and the SLO oracle; print queueing delay, SLO misses and cost, "
                    "write simulation.json (with the per-step series) and simulation.png.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", required=True, type=Path, help="trace CSV file")
    parser.add_argument("--format", default="auto", choices=["auto", *FORMATS], help="trace format (default: auto)")
    parser.add_argument("--cold-start", type=_cold_start_type, default=300.0, metavar="SECONDS",
                        help="seconds from asking for a replica to it serving (default: 300)")
    parser.add_argument("--capacity", type=tokens_per_s_type, metavar="TOK_PER_S",
                        help="generated tokens/s one replica serves at full batch")
    parser.add_argument("--prefill-speed", type=tokens_per_s_type, metavar="TOK_PER_S",
                        help="prompt tokens/s one replica prefills (default: from --model sizing; without "
                             "--model prompts cost nothing)")
    parser.add_argument("--slo", type=_slo_type, default=10.0, metavar="SECONDS",
                        help="queueing delay a request may wait (default: 10); the oracle and the miss share use it")
    parser.add_argument("--model", help="model source (e.g. hf://org/name) to derive capacity and price via sizing")
    parser.add_argument("--instance-type", help="instance type for --model, or the price of --capacity")
    parser.add_argument("--max-num-seqs", type=max_num_seqs_type, default=8,
                        help="batch size for --model sizing (default: 8)")
    parser.add_argument("--price-per-hour", type=price_per_hour_type,
                        help="price of one replica per hour in $ (overrides sizing)")
    parser.add_argument("--scale", type=_scale, default=None, metavar="FACTOR|auto",
                        help=f"multiply demand by FACTOR; 'auto' (default) makes the busiest minute need "
                             f"{AUTO_SCALE_PEAK_REPLICAS} replicas")
    parser.add_argument("--utilization", type=_utilization_type, default=0.85,
                        help="target share of capacity each replica carries (default: 0.85)")
    parser.add_argument("--min-replicas", type=_replicas_type, default=1)
    parser.add_argument("--max-replicas", type=_max_replicas_type,
                        help=f"default: twice the replicas static peak needs (at most {MAX_REPLICAS})")
    parser.add_argument("--no-predictive", action="store_true", help="turn the policy's forecast term off")
    parser.add_argument("--decode-speed", type=_decode_speed_type, default=DEFAULT_DECODE_TOKENS_PER_S,
                        metavar="TOK_PER_S",
                        help=f"tokens/s one sequence decodes at, to spread per-request traces "
                             f"(default: {DEFAULT_DECODE_TOKENS_PER_S:g})")
    parser.add_argument("--scrape-interval", type=_scrape_interval_type, default=15.0, metavar="SECONDS")
    parser.add_argument("--control-interval", type=_control_interval_type, default=15.0, metavar="SECONDS")
    parser.add_argument("--out", type=Path, default=Path("simulation-out"), metavar="DIR",
                        help="directory for simulation.json and simulation.png (default: ./simulation-out)")
    parser.add_argument("--no-plot", action="store_true", help="skip simulation.png")
    parser.set_defaults(func=main)
    return parser


def _capacity_and_price(args: argparse.Namespace) -> tuple[float, float, float | None, str]:
    """Decode capacity and prefill speed from the flags or sizing; price from the flag, sizing or the catalog."""
    price = args.price_per_hour
    if args.model:
        result = size(SizingRequest(source=args.model, instance_type=args.instance_type,
                                    max_num_seqs=args.max_num_seqs))
        model = replica_model_from_sizing(result, args.max_num_seqs)
        capacity = args.capacity or model.decode_tokens_per_s
        prefill = args.prefill_speed or model.prefill_tokens_per_s
        price = price if price is not None else result.price_per_hour
        return capacity, prefill, price, (f"{args.model} on {result.instance.name} TP {result.tensor_parallel}: "
                                          f"{capacity:,.0f} generated and {prefill:,.0f} prompt tok/s per replica "
                                          "(sizing estimate)")
    if args.capacity is None:
        raise ValueError("pass --capacity TOK_PER_S, or --model (and optionally --instance-type) to size it")
    if price is None and args.instance_type:
        price = get_instance(args.instance_type).price_per_hour
    prefill = args.prefill_speed or math.inf
    prompt = "prompts free" if math.isinf(prefill) else f"{prefill:,.0f} prompt tok/s"
    return args.capacity, prefill, price, f"{args.capacity:,.0f} generated tok/s per replica, {prompt} (given)"


def main(args: argparse.Namespace) -> int:
    """Run the comparison; errors a user can fix are raised as InputError (one line on stderr, exit code 2)."""
    try:
        return _run(args)
    except (ValueError, OSError) as exc:  # TraceError, SizingError, the settings' and policy's own checks, --out
        raise InputError(str(exc)) from None


def _run(args: argparse.Namespace) -> int:
    capacity, prefill, price, capacity_note = _capacity_and_price(args)
    trace = load_trace(args.trace, args.format, decode_tokens_per_s=args.decode_speed)
    prefill_cost = capacity / prefill
    scale = args.scale or AUTO_SCALE_PEAK_REPLICAS * capacity / max(trace.peak(60, prefill_cost), 1e-9)
    busiest = float((trace.tokens_per_s + prefill_cost * trace.prompt_tokens_per_s).max()) * scale / capacity
    if not busiest <= MAX_REPLICAS:
        raise InputError(f"at demand ×{scale:.3g} the busiest second of {trace.name} needs {busiest:,.0f} replicas of "
                         f"{capacity:,.0f} tok/s; simulate models at most {MAX_REPLICAS}: lower --scale or raise "
                         "--capacity")
    trace = trace.scaled(scale)
    settings = SimulationSettings(capacity_tokens_per_s=capacity, cold_start_s=args.cold_start, slo_s=args.slo,
                                  prefill_tokens_per_s=prefill, max_num_seqs=args.max_num_seqs,
                                  scrape_interval_s=args.scrape_interval, control_interval_s=args.control_interval,
                                  price_per_hour=price, min_replicas=args.min_replicas, utilization=args.utilization)
    max_replicas = args.max_replicas or max(2 * peak_replicas(trace, settings), args.min_replicas, 1)
    settings = dataclasses.replace(settings, max_replicas=max_replicas)
    config = default_config(capacity, args.cold_start, min_replicas=args.min_replicas, max_replicas=max_replicas,
                            utilization=args.utilization, queue_wait_slo_s=args.slo, max_num_seqs=args.max_num_seqs,
                            scrape_interval_s=args.scrape_interval, control_interval_s=args.control_interval,
                            predictive=not args.no_predictive)
    from tqdm import tqdm

    total = 4 * len(trace.tokens_per_s)
    with tqdm(total=total, unit="step", desc="simulating", disable=None, file=sys.stderr) as bar:
        runs = compare(trace, settings, config, on_progress=bar.update)
    print(f"trace {trace.name} ({trace.format}), {trace.duration_s / 3600:.2f} h, demand ×{scale:.3g} "
          f"(mean {trace.tokens_per_s.mean():,.0f} generated + {trace.prompt_tokens_per_s.mean():,.0f} prompt tok/s, "
          f"busiest minute {trace.peak(60, prefill_cost):,.0f} work tok/s)")
    print(f"{capacity_note}; cold start {args.cold_start:g}s; SLO {args.slo:g}s queueing; price "
          f"{'unknown' if price is None else f'${price:g}/h'}; replicas {args.min_replicas}..{max_replicas}")
    print(format_table(runs, args.slo))
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(to_document(trace, settings, config, runs), args.out / "simulation.json")
    written = [args.out / "simulation.json"]
    if not args.no_plot:
        write_plot(trace, settings, runs, args.out / "simulation.png")
        written.append(args.out / "simulation.png")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0
