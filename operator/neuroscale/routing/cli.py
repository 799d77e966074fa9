"""`neuroscale route-sim`: replay a prefix trace through N replicas under each routing policy and print the table."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

from neuroscale.cli import InputError, float_in, int_in, max_num_seqs_type
from neuroscale.routing.simulator import (
    BLOCK_TOKENS, DEFAULT_BLOCKS_PER_REPLICA, DEFAULT_DECODE_TOKENS_PER_S, DEFAULT_INFLIGHT_PER_REPLICA,
    DEFAULT_PREFILL_TOKENS_PER_S, DEFAULT_PREFIX_BLOCKS, PolicyResult, SimulationSettings, compare,
)
from neuroscale.routing.traces import load_prefix_trace

__all__ = ["add_parser", "format_table", "main"]

MAX_REPLICAS = 1024
EXAMPLE = """example:
  neuroscale route-sim --trace mooncake_synthetic_trace.jsonl --replicas 4 16
  neuroscale route-sim --trace mooncake_synthetic_trace.jsonl --model hf://meta-llama/Llama-3.1-8B-Instruct \\
      --max-model-len 131072 --max-num-seqs 8 --json routing.json
"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register `route-sim` on the `neuroscale` command line."""
    parser = subparsers.add_parser(
        "route-sim", help="replay a prefix trace through N replicas under each routing policy",
        description="Replay a trace of prompt block hashes (Mooncake's JSONL format) through N replicas, each with "
                    "an LRU prefix cache, under random, round-robin, least-loaded, plain consistent-hash, session "
                    "and prefix routing; print the prefix-cache hit rate, prompt tokens computed and load "
                    "imbalance of each next to the ceiling (one cache of every replica's capacity, shared).",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", required=True, metavar="FILE", help="JSONL: timestamp, input_length, "
                        "output_length, hash_ids")
    parser.add_argument("--replicas", type=int_in(1, MAX_REPLICAS), nargs="+", default=[4, 16], metavar="N",
                        help="replica counts to simulate (default: 4 16)")
    capacity = parser.add_mutually_exclusive_group()
    capacity.add_argument("--blocks-per-replica", type=int_in(1, 10_000_000), metavar="BLOCKS",
                          help=f"prefix-cache capacity per replica in blocks (default {DEFAULT_BLOCKS_PER_REPLICA})")
    capacity.add_argument("--model", metavar="SOURCE", help="size a replica for this model (hf://org/name) and "
                          "take its KV-cache budget and decode speed from the sizing model")
    parser.add_argument("--instance-type", help="with --model: pin the instance")
    parser.add_argument("--max-model-len", type=int_in(128, 1 << 22), default=131072,
                        help="with --model: tokens per sequence (default 131072; the trace's prompts run to 191k)")
    parser.add_argument("--max-num-seqs", type=max_num_seqs_type, default=None,
                        help=f"with --model: sequences per replica (default 8); also the mean in-flight requests "
                             f"per replica the trace is replayed at (default {DEFAULT_INFLIGHT_PER_REPLICA:g})")
    parser.add_argument("--block-tokens", type=int_in(1, 1 << 20), default=BLOCK_TOKENS,
                        help=f"tokens per hash id (default {BLOCK_TOKENS}, Mooncake's)")
    parser.add_argument("--prefill-tokens-per-s", type=float_in(0, 1e9, low_open=True),
                        default=DEFAULT_PREFILL_TOKENS_PER_S, help="uncached prompt tokens one replica computes a "
                        f"second (default {DEFAULT_PREFILL_TOKENS_PER_S:g})")
    parser.add_argument("--decode-tokens-per-s", type=float_in(0, 1e6, low_open=True), default=None,
                        help=f"output tokens a second for one sequence (default {DEFAULT_DECODE_TOKENS_PER_S:g}, or "
                             "the sizing model's with --model)")
    parser.add_argument("--load-factor", type=float_in(1.0, 100.0, low_open=True), default=None,
                        help="bounded-load factor c (default 1.25): no replica takes more than c × the mean")
    parser.add_argument("--prefix-blocks", type=int_in(1, 1024), default=DEFAULT_PREFIX_BLOCKS,
                        help=f"most leading blocks the prefix key may cover (default {DEFAULT_PREFIX_BLOCKS})")
    parser.add_argument("--placements", type=int_in(1, 100), default=5,
                        help="ring placements (replica addresses) each policy is averaged over (default 5)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except (ValueError, OSError) as error:  # PrefixTraceError, SizingError, --json
        raise InputError(str(error)) from None


def _base_settings(args: argparse.Namespace) -> tuple[SimulationSettings, str]:
    seqs = args.max_num_seqs
    settings = SimulationSettings(replicas=1, block_tokens=args.block_tokens,
                                  prefill_tokens_per_s=args.prefill_tokens_per_s,
                                  inflight_per_replica=float(seqs or DEFAULT_INFLIGHT_PER_REPLICA))
    if args.load_factor is not None:
        settings = dataclasses.replace(settings, load_factor=args.load_factor)
    settings = dataclasses.replace(settings, prefix_blocks=args.prefix_blocks)
    if args.model is None:
        blocks = args.blocks_per_replica or DEFAULT_BLOCKS_PER_REPLICA
        decode = args.decode_tokens_per_s or DEFAULT_DECODE_TOKENS_PER_S
        return dataclasses.replace(settings, blocks_per_replica=blocks, decode_tokens_per_s=decode), \
            f"{blocks} blocks a replica"
    from neuroscale.sizing import SizingRequest, size

    seqs = seqs or 8
    sized = size(SizingRequest(source=args.model, instance_type=args.instance_type,
                               max_model_len=args.max_model_len, max_num_seqs=seqs))
    blocks = max(1, args.max_model_len * seqs // args.block_tokens)
    decode = args.decode_tokens_per_s or sized.tokens_per_second / seqs
    note = (f"{blocks} blocks a replica: the KV budget of {args.model} on {sized.instance.name} TP "
            f"{sized.tensor_parallel} ({sized.kv_cache_gib:.0f} GiB, {args.max_model_len} tokens × {seqs} sequences)")
    return dataclasses.replace(settings, blocks_per_replica=blocks, decode_tokens_per_s=decode), note


def _run(args: argparse.Namespace) -> int:
    base, note = _base_settings(args)
    requests = load_prefix_trace(args.trace)
    print(f"{Path(args.trace).name}: {len(requests)} requests; {note}; replayed at "
          f"{base.inflight_per_replica:g} requests in flight per replica; load factor {base.load_factor:g}",
          file=sys.stderr)
    results = []
    for replicas in args.replicas:
        rows = compare(requests, dataclasses.replace(base, replicas=replicas), placements=args.placements)
        results.extend(rows)
        print(format_table(rows))
    if args.json:
        document = {"trace": str(args.trace), "settings": dataclasses.asdict(base) | {"replicas": args.replicas},
                    "results": [_row(result, results) for result in results]}
        Path(args.json).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


def _row(result: PolicyResult, results: list[PolicyResult]) -> dict[str, Any]:
    row = dataclasses.asdict(result)
    row["mean_inflight"] = None if math.isnan(result.mean_inflight) else result.mean_inflight
    row["share_of_ceiling"] = result.hit_rate / _ceiling(result, results)
    return row


def _ceiling(result: PolicyResult, results: list[PolicyResult]) -> float:
    rate = next(r.hit_rate for r in results if r.policy == "ceiling" and r.replicas == result.replicas)
    return rate or 1.0


def format_table(rows: list[PolicyResult]) -> str:
    """A Markdown table of one replica count: policy, hit rate (± its spread over placements), share of the
    ceiling, prompt tokens computed, imbalance."""
    lines = [f"| {rows[0].replicas} replicas | prefix-cache hit rate | of ceiling | prompt tokens computed | "
             "busiest ÷ mean in flight |", "|---|---|---|---|---|"]
    for row in rows:
        share = row.hit_rate / _ceiling(row, rows)
        imbalance = "—" if row.policy == "ceiling" else f"{row.imbalance:.2f}"
        spread = f" ± {row.hit_rate_sd:.1%}" if row.hit_rate_sd else ""
        lines.append(f"| {row.policy} | {row.hit_rate:.1%}{spread} | {share:.0%} | {row.prefill_tokens / 1e6:.1f} M | "
                     f"{imbalance} |")
    return "\n".join(lines)

