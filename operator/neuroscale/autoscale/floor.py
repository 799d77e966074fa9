"""The reactive floor: what an idealised causal scaler achieves, and the standing headroom a target would need.

The floor scaler (README, "Reactive floor") knows, every second t, the demand level exactly (the mean work of the
SLO-long window ending at t: the queue averages over that long anyway) and the queued work. It orders at once,
with no metric lag and no control interval, ``headroom`` × that level at full capacity plus the capacity that
drains, within the SLO, the queued work that the replicas already ordered will not serve (their capacity beyond
that level over the next cold start); what it orders at t is ready at t + cold start, and it releases a replica the moment it is not needed (no stabilization). Before the first order can be
ready it runs the fleet that served the opening demand (mean work of the first ``opening_s``) steadily before
the trace began, again × ``headroom``. It is paid as cheaply as that ready profile allows (`baselines.pay_for_ready`,
which is causal here: at t the floor already knows its ready replicas up to t + cold start).

It cannot see past t. With ``headroom`` = 1 it is the best a reactive scaler that keeps no standing spare can do;
no real scaler (metrics of 15 s scrapes, 2-minute rates) sees demand this early. Where it misses more than the
budget, no causal policy meets the target at that cold start without keeping standing headroom, and
`standing_headroom` finds the smallest factor that would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from neuroscale.autoscale.baselines import OraclePlan, pay_for_ready
from neuroscale.autoscale.queueing import queue_waits

__all__ = ["FloorRun", "demand_level", "reactive_floor", "standing_headroom"]


@dataclass(frozen=True)
class FloorRun:
    """The floor's schedule and its two headline figures."""

    headroom: float
    plan: OraclePlan
    wait_s: np.ndarray
    miss_fraction: float
    replica_hours: float


def demand_level(work: np.ndarray, slo_s: float, step_s: float = 1.0) -> np.ndarray:
    """Mean work per second of the window of ``slo_s`` (at least one step) ending with each step."""
    width = max(1, int(round(slo_s / step_s)))
    cumulative = np.concatenate(([0.0], np.cumsum(np.asarray(work, dtype=float))))
    index = np.arange(1, len(work) + 1)
    start = np.maximum(index - width, 0)
    return (cumulative[index] - cumulative[start]) / (index - start)


def reactive_floor(work: np.ndarray, requests: np.ndarray, capacity_tokens_per_s: float, cold_start_s: float,
                   slo_s: float, step_s: float = 1.0, *, headroom: float = 1.0, min_replicas: int = 1,
                   opening_s: float = 120.0) -> FloorRun:
    """Run the floor scaler (module docstring) on ``work`` (tokens/s per step) weighted by ``requests`` per step."""
    if not (capacity_tokens_per_s > 0 and headroom > 0 and cold_start_s >= 0 and step_s > 0):
        raise ValueError("capacity, headroom and step must be > 0 and the cold start >= 0")
    work = np.asarray(work, dtype=float)
    steps = len(work)
    lead = int(math.ceil(cold_start_s / step_s - 1e-9))
    level = (headroom * demand_level(work, slo_s, step_s)).tolist()
    opening = float(work[: max(1, int(opening_s / step_s))].mean()) if steps else 0.0
    fleet = max(min_replicas, math.ceil(headroom * opening / capacity_tokens_per_s - 1e-9))
    drain_s = max(slo_s, step_s)
    ready = np.full(steps, fleet, dtype=int)
    ordered = [fleet] * steps
    backlog = 0.0
    arriving = work.tolist()
    pipeline = fleet * lead  # replicas ready over the next cold start, all already ordered: ready[t .. t+lead-1]
    for t in range(steps):
        # The order of t, ready at t + cold start: the demand level plus draining within the SLO today's queue,
        # less what the replicas already ordered will serve beyond that level meanwhile. A deficit of the
        # replicas ordered is not extrapolated: that would order a cold start's worth of a 10 s fluctuation.
        surplus = max(0.0, (pipeline * capacity_tokens_per_s - level[t] * lead) * step_s)
        ordered[t] = max(min_replicas, math.ceil((level[t] + max(0.0, backlog - surplus) / drain_s)
                                                 / capacity_tokens_per_s - 1e-9))
        if t >= lead:
            ready[t] = ordered[t - lead]
        backlog = max(0.0, backlog + (arriving[t] - int(ready[t]) * capacity_tokens_per_s) * step_s)
        if lead:
            pipeline += ordered[t] - int(ready[t])
    plan = pay_for_ready(ready, lead)
    waits = queue_waits(work, ready * capacity_tokens_per_s, step_s)
    requests = np.asarray(requests, dtype=float)
    total = float(requests.sum())
    missed = float(requests[waits > slo_s + 1e-9].sum()) / total if total > 0 else 0.0
    return FloorRun(headroom, plan, waits, missed, float(plan.paid.sum()) * step_s / 3600)


def standing_headroom(work: np.ndarray, requests: np.ndarray, capacity_tokens_per_s: float, cold_start_s: float,
                      slo_s: float, step_s: float = 1.0, *, miss_budget: float = 0.01, min_replicas: int = 1,
                      opening_s: float = 120.0, most: float = 16.0, resolution: float = 0.01) -> FloorRun | None:
    """The floor run with the smallest headroom (to ``resolution``) that misses at most ``miss_budget``.

    More headroom never adds a miss (every step's capacity is at least as large, and a FCFS queue's waits only
    shrink), so a bisection finds it. None when even ``most`` × misses more.
    """
    def run(factor: float) -> FloorRun:
        return reactive_floor(work, requests, capacity_tokens_per_s, cold_start_s, slo_s, step_s,
                              headroom=factor, min_replicas=min_replicas, opening_s=opening_s)

    low, high = run(1.0), run(most)
    if low.miss_fraction <= miss_budget:
        return low
    if high.miss_fraction > miss_budget:
        return None
    while high.headroom - low.headroom > resolution:
        middle = run((low.headroom + high.headroom) / 2)
        low, high = (low, middle) if middle.miss_fraction <= miss_budget else (middle, high)
    return high
