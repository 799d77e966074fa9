"""Routing benchmark: the Mooncake synthetic trace through 4 and 16 replicas under every routing policy (prefix-cache
hit rate, prompt tokens computed, busiest ÷ mean in flight, next to the ceiling), the prefix policy's trade-off
over its load factor, the CPU one routing decision costs (key, bound and ring walk), and what routing adds to the
gateway's preparation of an upstream request (in process, nothing sent). Prints tables.

    .venv/bin/python tests/bench/bench_routing.py [--trace FILE] [--placements 5]

Any trace in Mooncake's format (timestamp, input_length, output_length, hash_ids) drops in with --trace.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "operator"))

from neuroscale.routing.balancer import HashRing, RunningMean, choose, request_factor  # noqa: E402
from neuroscale.routing.cli import format_table  # noqa: E402
from neuroscale.routing.keys import routing_key  # noqa: E402
from neuroscale.routing.simulator import SimulationSettings, compare  # noqa: E402
from neuroscale.routing.traces import load_prefix_trace  # noqa: E402

# The shared traces sit beside the checkout (../shared/traces), as bench_autoscale.py expects them.
TRACE = ROOT.parents[1] / "shared" / "traces" / "mooncake_synthetic_trace.jsonl"
SIZES = (4, 16)
FACTORS = (1.1, 1.2, 1.25, 1.3, 1.5, 2.0)
CONVERSATION = {"model": "cascade", "messages": [
    {"role": "system", "content": "You answer questions about European geography. " * 32},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."}, {"role": "user", "content": "And of Italy?"}]}


def decision_microseconds(replicas: int) -> float:
    """Best-of-5 mean CPU time of one routing decision as the gateway makes it (key, factor, choice; the body's
    JSON, whose size the factor reads, is encoded for the upstream with or without routing)."""
    ring = HashRing(f"10.0.{index // 250}.{index % 250}:8000" for index in range(replicas))
    loads = {name: index % 7 for index, name in enumerate(ring.replicas)}
    mean = RunningMean()
    size = len(json.dumps(CONVERSATION))

    def decide() -> None:
        key = routing_key("prefix", "chat", CONVERSATION, None, 2048)
        choose(ring, key, loads, ring.replicas, factor=request_factor(1.25, size, mean.add(size)))

    runs = 2000
    return min(timeit.repeat(decide, number=runs, repeat=5)) / runs * 1e6


def preparation_microseconds() -> tuple[float, float]:
    """Best-of-5 CPU time the gateway spends preparing one upstream request (body, URL, and with routing the key,
    bound and choice over 8 replicas), through the Service and routed; the request itself is never sent."""
    import warnings

    import aiohttp

    from neuroscale.gateway.config import OpenAITier
    from neuroscale.gateway.upstreams.openai import OpenAIUpstream
    from neuroscale.gateway.upstreams.routed import RoutedOpenAIUpstream

    async def measure() -> tuple[float, float]:
        async with aiohttp.ClientSession() as session:
            tier = {"name": "engine", "url": "http://127.0.0.1:9/v1", "model": "stub"}
            routing = {"service": "engine", "namespace": "bench",
                       "static_replicas": [f"127.0.0.{index}:8000" for index in range(1, 9)]}
            through = OpenAIUpstream(OpenAITier(**tier), session)
            routed = RoutedOpenAIUpstream(OpenAITier(**tier, routing=routing), session)
            body = {**CONVERSATION, "stream": True}
            runs = 5000
            times = [min(timeit.repeat(lambda u=upstream: u._post("chat", body), number=runs, repeat=5)) / runs * 1e6
                     for upstream in (through, routed)]
            return times[0], times[1]

    with warnings.catch_warnings():  # the prepared requests are dropped unsent, on purpose
        warnings.simplefilter("ignore", RuntimeWarning)
        return asyncio.run(measure())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trace", default=str(TRACE))
    parser.add_argument("--placements", type=int, default=5)
    args = parser.parse_args()
    requests = load_prefix_trace(args.trace)
    base = SimulationSettings(replicas=1)
    print(f"{Path(args.trace).name}: {len(requests)} requests, {base.blocks_per_replica} blocks a replica, "
          f"{base.inflight_per_replica:g} in flight per replica, mean of {args.placements} ring placements\n")
    for replicas in SIZES:
        print(format_table(compare(requests, dataclasses.replace(base, replicas=replicas),
                                   placements=args.placements)))
        print()
    print("| prefix routing, load factor | " + " | ".join(f"{n} replicas: of ceiling / busiest ÷ mean" for n in SIZES)
          + " |\n|---|" + "---|" * len(SIZES))
    for factor in FACTORS:
        cells = []
        for replicas in SIZES:
            settings = dataclasses.replace(base, replicas=replicas, load_factor=factor)
            prefix, ceiling = compare(requests, settings, ("prefix",), placements=args.placements)
            cells.append(f"{prefix.hit_rate / ceiling.hit_rate:.0%} / {prefix.imbalance:.2f}")
        print(f"| {factor:g} | " + " | ".join(cells) + " |")
    print()
    for replicas in (4, 16, 64):
        print(f"routing decision, {replicas} replicas: {decision_microseconds(replicas):.1f} µs CPU a request")
    through, routed = preparation_microseconds()
    print(f"gateway preparing an upstream request: {through:.1f} µs through the Service, {routed:.1f} µs routed "
          f"over 8 replicas (+{routed - through:.1f} µs)")


if __name__ == "__main__":
    main()
