"""Replica choice: consistent hashing with bounded loads over a routing key, least-loaded without one.

The ring and the bound follow Mirrokni, Thorup and Zadimoghaddam, "Consistent Hashing with Bounded Loads" (SODA
2018): a key goes to the first replica clockwise from its hash whose load, with this request, stays within
c × (in-flight + 1) ÷ ready replicas. A replica over its bound is passed, not forgotten: the key's next replica on
the ring takes it, so a spilled conversation lands on the same second replica every time and builds its prefix
cache there too. The same walk is the retry order when a replica cannot be reached, and the order the key moves to
when its replica leaves the set.

Two departures from the paper, both measured with `neuroscale route-sim`:
- The bound is not rounded up (the paper's ceiling keeps some replica within it; here the bound is never below the
  lightest replica's load + 1, which does the same). At a handful of requests per replica a ceiling lets the
  busiest replica run a third over the mean.
- c depends on the request: what a request gains from its replica's prefix cache grows with its prompt, what it
  costs the balance does not. A prompt of average length gets the configured factor; the slack over the mean
  scales with the prompt's length up to twice the average (and twice the slack); short prompts go nearly where the
  load is least. Average means this gateway's running mean prompt length, so the rule carries over to any traffic.

Pure: the ring depends only on the replica names, so every gateway replica computes the same key order from the
same endpoint set; only the loads (each gateway's own in-flight counts) and its running mean differ.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence

DEFAULT_LOAD_FACTOR = 1.25
# Points per replica: 160 as in ketama (libketama, uhashring). With n replicas the share of the key space a replica
# owns has a standard deviation near 1/sqrt(160) ≈ 8 % of the mean, small against the 25 % the bound allows.
POINTS_PER_REPLICA = 160
# The running mean prompt length forgets with a horizon of about a thousand requests: long enough to be steady
# within a burst, short enough to follow a change of traffic within minutes.
MEAN_HORIZON_REQUESTS = 1000


def key_hash(key: bytes) -> int:
    """A 64-bit position on the ring (BLAKE2b: fast, in hashlib, stable across processes unlike hash())."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


class HashRing:
    """A consistent-hash ring of replica names, built once per endpoint set."""

    def __init__(self, replicas: Iterable[str], points_per_replica: int = POINTS_PER_REPLICA) -> None:
        self.replicas: tuple[str, ...] = tuple(sorted(set(replicas)))
        self.members = frozenset(self.replicas)
        points = sorted(
            (key_hash(f"{name}#{i}".encode()), name) for name in self.replicas for i in range(points_per_replica)
        )
        self._positions = [position for position, _ in points]
        self._owners = [name for _, name in points]

    def __len__(self) -> int:
        return len(self.replicas)

    def walk(self, key: bytes) -> Iterator[str]:
        """Every replica once, clockwise from the key's position: its owner first."""
        if not self._positions:
            return
        start = bisect.bisect(self._positions, key_hash(key))
        seen: set[str] = set()
        count = len(self._owners)
        for offset in range(count):
            owner = self._owners[(start + offset) % count]
            if owner not in seen:
                seen.add(owner)
                yield owner
                if len(seen) == len(self.replicas):
                    return


class RunningMean:
    """An exponentially weighted mean over about `horizon` observations (the first observation starts it)."""

    def __init__(self, horizon: int = MEAN_HORIZON_REQUESTS) -> None:
        self._weight = 1.0 / horizon
        self.value: float | None = None

    def add(self, sample: float) -> float:
        self.value = sample if self.value is None else self.value + self._weight * (sample - self.value)
        return self.value


def request_factor(load_factor: float, prompt_size: float, mean_prompt_size: float | None) -> float:
    """The bound's factor for one request: 1 + 2(c − 1) × min(1, prompt ÷ twice the mean prompt), so c for a prompt
    of average length, up to 2c − 1 for one twice as long or longer, near 1 for a short one."""
    if not mean_prompt_size or mean_prompt_size <= 0 or load_factor == float("inf"):
        return load_factor
    return 1.0 + 2.0 * (load_factor - 1.0) * min(1.0, prompt_size / (2.0 * mean_prompt_size))


def load_bound(in_flight: int, replicas: int, factor: float = DEFAULT_LOAD_FACTOR, lightest: int = 0) -> float:
    """The most requests one replica may hold once this one is placed: c × (in-flight + 1) ÷ replicas, and never
    less than the lightest replica's load + 1 (so some replica always qualifies)."""
    return max(factor * (in_flight + 1) / replicas, lightest + 1)


def least_loaded(candidates: Sequence[str], loads: Mapping[str, int], tie_break: int = 0) -> list[str]:
    """Candidates by load, lightest first; equal loads rotate by `tie_break` so idle replicas share the traffic."""
    count = len(candidates)
    return [name for _, _, name in sorted(
        (loads.get(name, 0), (index - tie_break) % count, name) for index, name in enumerate(candidates)
    )]


def choose(
    ring: HashRing,
    key: bytes | None,
    loads: Mapping[str, int],
    ready: Iterable[str] | None = None,
    *,
    factor: float = DEFAULT_LOAD_FACTOR,
    tie_break: int = 0,
) -> list[str]:
    """The ready replicas in the order to try them: the choice first, then where to retry if it cannot be reached.

    With a key: the ring walk from the key, the first replica within the load bound moved to the front (a replica
    over its bound keeps its place further down, as a retry). Without a key: least-loaded. `loads` holds in-flight
    requests per replica (absent means 0); `ready` limits the candidates (None: every replica of the ring).
    """
    allowed = ring.members if ready is None else ring.members.intersection(ready)
    if not allowed:
        return []
    if key is None:
        return least_loaded(sorted(allowed), loads, tie_break)
    order = [name for name in ring.walk(key) if name in allowed]
    current = [loads.get(name, 0) for name in order]
    bound = load_bound(sum(current), len(order), factor, min(current))
    index = next(i for i, load in enumerate(current) if load + 1 <= bound)
    return [order[index], *order[:index], *order[index + 1:]]
