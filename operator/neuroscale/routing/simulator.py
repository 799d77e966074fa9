"""Replay a prefix trace through N replicas, each with an LRU prefix cache, under each routing policy.

Model. A replica keeps the KV blocks of prompts it has seen in an LRU cache of `blocks_per_replica` blocks; a
request reuses the longest run of its leading blocks found there (prefix caching reuses a prefix, never a block in
the middle) and computes the rest. A request is in flight from its arrival until it has computed its uncached
prompt tokens at `prefill_tokens_per_s` and generated its output at `decode_tokens_per_s` (one sequence); replicas
batch, so requests do not queue behind one another (an infinite-server model: load shows as in-flight requests,
which is what the balancer bounds). The ceiling is one cache of every replica's capacity that all requests share:
no routing can reuse more.

Load. The trace's arrivals are stretched or compressed by one factor, chosen so that with no cache reuse the replicas
would hold `inflight_per_replica` requests each on average: N replicas are run at the load N replicas are sized for,
so 4 and 16 replicas are compared at the same busyness. Imbalance is the busiest replica's in-flight count ÷ the
mean in-flight count, both averaged over time.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
import statistics
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from neuroscale.routing.balancer import (
    DEFAULT_LOAD_FACTOR, HashRing, RunningMean, choose, least_loaded, request_factor,
)
from neuroscale.routing.keys import HotPrefixes, block_openings, routing_key
from neuroscale.routing.traces import TraceRequest, sessions

# "consistent-hash" is the prefix key on the same ring with no load bound: what the bound costs and buys.
POLICIES = ("random", "round-robin", "least-loaded", "consistent-hash", "session", "prefix")
# Mooncake's block size; the trace's hash_ids are one per 512-token block.
BLOCK_TOKENS = 512
# The reference point: 2,000 blocks (about a million tokens) of KV cache per replica.
DEFAULT_BLOCKS_PER_REPLICA = 2000
# Prefill on one replica: Llama-3.1-8B computes a long prompt at a few thousand tokens/s per NeuronCore pair.
DEFAULT_PREFILL_TOKENS_PER_S = 4000.0
# Decode speed of one sequence in a batch, as in the autoscaler's simulator (autoscale/traces.py).
DEFAULT_DECODE_TOKENS_PER_S = 25.0
DEFAULT_INFLIGHT_PER_REPLICA = 8.0
# The longest prefix key, in blocks: the key is the shortest run of leading blocks that is not hot (keys.py).
DEFAULT_PREFIX_BLOCKS = 8


class LRUBlocks:
    """A replica's prefix cache: block ids, least recently used first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def cached_prefix(self, blocks: Sequence[int]) -> int:
        """How many leading blocks are cached."""
        count = 0
        for block in blocks:
            if block not in self._blocks:
                break
            count += 1
        return count

    def admit(self, blocks: Sequence[int]) -> None:
        """Touch or insert every block of a prompt, evicting the least recently used past capacity."""
        for block in blocks:
            if block in self._blocks:
                self._blocks.move_to_end(block)
            else:
                self._blocks[block] = None
        while len(self._blocks) > self.capacity:
            self._blocks.popitem(last=False)


@dataclass(frozen=True)
class SimulationSettings:
    replicas: int
    blocks_per_replica: int = DEFAULT_BLOCKS_PER_REPLICA
    block_tokens: int = BLOCK_TOKENS
    prefill_tokens_per_s: float = DEFAULT_PREFILL_TOKENS_PER_S
    decode_tokens_per_s: float = DEFAULT_DECODE_TOKENS_PER_S
    inflight_per_replica: float = DEFAULT_INFLIGHT_PER_REPLICA
    load_factor: float = DEFAULT_LOAD_FACTOR
    prefix_blocks: int = DEFAULT_PREFIX_BLOCKS
    # Which placement of the replicas on the ring (their names stand for pod IPs, which are arbitrary) and which
    # random sequence: results differ by a few points between placements, so `compare` averages several.
    seed: int = 0

    def service_s(self, prompt_tokens: int, output_tokens: int) -> float:
        return prompt_tokens / self.prefill_tokens_per_s + output_tokens / self.decode_tokens_per_s


@dataclass(frozen=True)
class PolicyResult:
    policy: str
    replicas: int
    hit_rate: float  # cached prompt blocks ÷ prompt blocks
    prefill_tokens: int  # prompt tokens computed
    imbalance: float  # time-averaged busiest in-flight ÷ time-averaged mean in-flight
    mean_inflight: float  # per replica, time-averaged
    hit_rate_sd: float = 0.0  # standard deviation over ring placements


@dataclass
class _Replay:
    """One policy's replay state."""

    settings: SimulationSettings
    names: list[str]
    caches: dict[str, LRUBlocks] = field(init=False)
    loads: dict[str, int] = field(init=False)
    finishing: list[tuple[float, int, str]] = field(default_factory=list)
    now: float = 0.0
    busiest_area: float = 0.0
    total_area: float = 0.0
    sequence: int = 0

    def __post_init__(self) -> None:
        self.caches = {name: LRUBlocks(self.settings.blocks_per_replica) for name in self.names}
        self.loads = dict.fromkeys(self.names, 0)

    def advance(self, until: float) -> None:
        """Finish every request done by `until`, integrating the loads over time."""
        while self.finishing and self.finishing[0][0] <= until:
            moment, _, name = heapq.heappop(self.finishing)
            self._integrate(moment)
            self.loads[name] -= 1
        self._integrate(until)

    def _integrate(self, moment: float) -> None:
        span = moment - self.now
        if span > 0:
            busiest, total = max(self.loads.values()), sum(self.loads.values())
            self.busiest_area += busiest * span
            self.total_area += total * span
            self.now = moment

    def serve(self, name: str, request: TraceRequest, finish_in: Callable[[int], float]) -> tuple[int, int]:
        """Place a request on `name`: (cached blocks, computed prompt tokens)."""
        cache = self.caches[name]
        cached = cache.cached_prefix(request.blocks)
        cache.admit(request.blocks)
        computed = max(0, request.input_tokens - cached * self.settings.block_tokens)
        self.loads[name] += 1
        self.sequence += 1
        heapq.heappush(self.finishing, (self.now + finish_in(computed), self.sequence, name))
        return cached, computed


def time_scale(requests: Sequence[TraceRequest], settings: SimulationSettings) -> float:
    """The factor on arrival times that gives `inflight_per_replica` per replica with no cache reuse (Little's law:
    in flight = arrival rate × time in the system)."""
    span = requests[-1].arrival_s - requests[0].arrival_s
    busy = sum(settings.service_s(r.input_tokens, r.output_tokens) for r in requests)
    if span <= 0 or busy <= 0:
        return 1.0
    return busy / (settings.inflight_per_replica * settings.replicas * span)


def routing_keys(requests: Sequence[TraceRequest], policy: str, settings: SimulationSettings) -> list[bytes | None]:
    """The key each request is hashed on: its shortest leading blocks that are not hot (prefix), its first block
    (plain consistent hashing), its conversation as a client's session header would name it (session), or none."""
    if policy == "consistent-hash":
        return [str(r.blocks[:1]).encode() for r in requests]
    if policy == "prefix":
        hot = HotPrefixes()
        return [routing_key("prefix", None, block_openings(r.blocks, settings.prefix_blocks), hot, settings.replicas)
                for r in requests]
    if policy == "session":
        return [f"session-{label}".encode() for label in sessions(list(requests))]
    return [None] * len(requests)


def replay(requests: Sequence[TraceRequest], policy: str, settings: SimulationSettings) -> PolicyResult:
    """One policy over the whole trace."""
    names = [f"10.{settings.seed}.0.{index}:8000" for index in range(settings.replicas)]
    state = _Replay(settings, names)
    ring = HashRing(names)
    rng = random.Random(settings.seed)
    scale = time_scale(requests, settings)
    start = requests[0].arrival_s
    keys = routing_keys(requests, policy, settings)
    hits = blocks = prefill = 0
    mean_prompt = RunningMean()
    for index, request in enumerate(requests):
        state.advance((request.arrival_s - start) * scale)
        mean = mean_prompt.add(request.input_tokens)
        if policy == "random":
            name = rng.choice(names)
        elif policy == "round-robin":
            name = names[index % len(names)]
        elif policy == "least-loaded":
            name = least_loaded(names, state.loads, tie_break=index)[0]
        else:
            factor = math.inf if policy == "consistent-hash" else request_factor(
                settings.load_factor, request.input_tokens, mean)
            name = choose(ring, keys[index], state.loads, factor=factor, tie_break=index)[0]
        cached, computed = state.serve(
            name, request, lambda computed: settings.service_s(computed, request.output_tokens)
        )
        hits += cached
        blocks += len(request.blocks)
        prefill += computed
    state.advance(max((moment for moment, _, _ in state.finishing), default=state.now))
    mean = state.total_area / max(state.now, 1e-9) / settings.replicas
    return PolicyResult(
        policy=policy, replicas=settings.replicas, hit_rate=hits / max(blocks, 1), prefill_tokens=prefill,
        imbalance=state.busiest_area * settings.replicas / max(state.total_area, 1e-9),
        mean_inflight=mean,
    )


def ceiling(requests: Sequence[TraceRequest], settings: SimulationSettings) -> PolicyResult:
    """One shared cache of every replica's capacity (load spread perfectly): the most any routing can reuse."""
    cache = LRUBlocks(settings.blocks_per_replica * settings.replicas)
    hits = blocks = prefill = 0
    for request in requests:
        cached = cache.cached_prefix(request.blocks)
        cache.admit(request.blocks)
        hits += cached
        blocks += len(request.blocks)
        prefill += max(0, request.input_tokens - cached * settings.block_tokens)
    return PolicyResult("ceiling", settings.replicas, hits / max(blocks, 1), prefill, 1.0, math.nan)


def compare(requests: Sequence[TraceRequest], settings: SimulationSettings,
            policies: Sequence[str] = POLICIES, placements: int = 1) -> list[PolicyResult]:
    """Every policy, then the ceiling; each policy's figures are the mean over `placements` ring placements
    (seeds `settings.seed` onwards), with the spread of its hit rate."""
    results = []
    for policy in policies:
        runs = [replay(requests, policy, dataclasses.replace(settings, seed=settings.seed + offset))
                for offset in range(placements)]
        results.append(PolicyResult(
            policy, settings.replicas, statistics.fmean(r.hit_rate for r in runs),
            round(statistics.fmean(r.prefill_tokens for r in runs)), statistics.fmean(r.imbalance for r in runs),
            statistics.fmean(r.mean_inflight for r in runs),
            statistics.stdev(r.hit_rate for r in runs) if placements > 1 else 0.0,
        ))
    return [*results, ceiling(requests, settings)]
