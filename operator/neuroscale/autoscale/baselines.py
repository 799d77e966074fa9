"""The scalers neuroscale is measured against (KEDA + HPA, Knative KPA, static peak, the SLO oracle) and the adapter
that runs the neuroscale policy behind the same interface.

Every scaler sees the same observations the operator would read from Prometheus; the oracle alone sees the future.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from neuroscale.autoscale.policy import Observation, PolicyConfig, ScalerState, decide
from neuroscale.autoscale.queueing import fluid_backlog, queue_waits

__all__ = ["HpaScaler", "KpaScaler", "NeuroscaleScaler", "OraclePlan", "Scaler", "StaticScaler", "oracle_plan",
           "pay_for_ready", "slo_needed_replicas", "slo_service_curve"]


class Scaler(Protocol):
    """Anything the simulator can drive: called every control interval, returns the replicas to ask for."""

    name: str

    def decide(self, now: float, observations: Sequence[Observation], current_replicas: int) -> int: ...


def _latest_tokens(now: float, observations: Sequence[Observation], stale_after_s: float) -> float | None:
    fresh = [o for o in observations
             if o.tokens_per_second is not None and math.isfinite(o.tokens_per_second) and 0 <= now - o.at
             <= stale_after_s]
    return max(fresh, key=lambda o: o.at).tokens_per_second if fresh else None


class NeuroscaleScaler:
    """The neuroscale policy (`policy.decide`) with its state carried between calls, as the operator does."""

    name = "neuroscale"

    def __init__(self, config: PolicyConfig):
        self.config = config
        self.state: ScalerState | None = None
        self.last_reason = ""

    def decide(self, now: float, observations: Sequence[Observation], current_replicas: int) -> int:
        decision = decide(now, observations, current_replicas, self.state, self.config)
        self.state, self.last_reason = decision.state, decision.reason
        return decision.replicas


@dataclass
class HpaScaler:
    """KEDA's Prometheus scaler on ``vllm:num_requests_waiting`` plus a tokens/s metric, driven by the Kubernetes HPA.

    The vLLM production-stack recipe (docs/source/use_cases/autoscaling-keda.rst): a KEDA ScaledObject with a
    ``prometheus`` trigger on ``vllm:num_requests_waiting``, threshold 5 (KEDA's default metricType AverageValue:
    5 waiting requests per replica), polled every 15 s. Next to it, the tokens/s trigger a user adds for throughput:
    the served tokens/s (generated + prompt at prefill cost) with an AverageValue target of the replica capacity ×
    the shared utilization. KEDA hands both to an HPA, which takes the larger recommendation; each is
    ceil(metric / target), unchanged while |metric / (target × current) − 1| <= tolerance (0.1).
    HPA defaults (kubernetes.io "Horizontal Pod Autoscaling", behavior defaults; sync period 15 s): scale-up with no
    stabilization, at most max(+100 %, +4 pods) per 15 s; scale-down to the highest recommendation of the last
    300 s, at most −100 % per 15 s. A missing metric means no change (the HPA skips a failed metric).
    """

    target_tokens_per_replica: float
    min_replicas: int
    max_replicas: int
    waiting_per_replica: float = 5.0
    tolerance: float = 0.1
    scale_down_stabilization_s: float = 300.0
    stale_after_s: float = 45.0
    scrape_interval_s: float = 15.0
    control_interval_s: float = 15.0
    name: str = "keda-hpa"

    def __post_init__(self) -> None:
        self._recommendations: list[tuple[float, int]] = []

    def _recommend(self, value: float, target: float, current: int) -> int:
        if current > 0 and abs(value / (target * current) - 1) <= self.tolerance:
            return current
        return math.ceil(value / target - 1e-9)

    def decide(self, now: float, observations: Sequence[Observation], current_replicas: int) -> int:
        tokens = _latest_tokens(now, observations, self.stale_after_s)
        if tokens is None:
            return current_replicas
        latest = max(observations, key=lambda o: o.at)
        recommendation = self._recommend(tokens, self.target_tokens_per_replica, current_replicas)
        if latest.queue_depth is not None and math.isfinite(latest.queue_depth):
            recommendation = max(recommendation,
                                 self._recommend(latest.queue_depth, self.waiting_per_replica, current_replicas))
        recommendation = min(max(recommendation, self.min_replicas), self.max_replicas)
        self._recommendations = [(at, n) for at, n in self._recommendations
                                 if now - at < self.scale_down_stabilization_s] + [(now, recommendation)]
        if recommendation > current_replicas:
            limit = max(2 * current_replicas, current_replicas + 4)
            return min(recommendation, limit, self.max_replicas)
        stabilized = max(n for _, n in self._recommendations)
        return min(current_replicas, stabilized)


@dataclass
class KpaScaler:
    """Knative's Pod Autoscaler on concurrency (requests in flight at the pod, queued ones included).

    knative.dev "Additional autoscaling configuration for Knative Pod Autoscaler" and config-autoscaler defaults:
    stable window 60 s, panic window 10 % of it (6 s), panic threshold 200 %, max scale-up rate 1000, max
    scale-down rate 2, a decision every 2 s (tick-interval) on per-second concurrency. desired = ceil(mean concurrency
    over the window / target), target = containerConcurrency (``max_num_seqs``) × target utilization (the shared
    one). Panic starts when desired_panic >= 2 × ready pods and ends after a stable window without that; in
    panic the scaler never scales down.
    """

    target_concurrency_per_replica: float
    min_replicas: int
    max_replicas: int
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    stale_after_s: float = 10.0
    scrape_interval_s: float = 1.0
    control_interval_s: float = 2.0
    metric_window_s: float = 2.0
    name: str = "knative-kpa"

    def __post_init__(self) -> None:
        self._panic_since: float | None = None

    @staticmethod
    def _concurrency(o: Observation) -> float | None:
        if o.running is None or o.queue_depth is None:
            return None
        return o.running + o.queue_depth

    def _window_mean(self, now: float, observations: Sequence[Observation], window_s: float) -> float | None:
        values = [c for o in observations if 0 <= now - o.at < window_s and (c := self._concurrency(o)) is not None]
        return sum(values) / len(values) if values else None

    def decide(self, now: float, observations: Sequence[Observation], current_replicas: int) -> int:
        fresh = [o for o in observations if 0 <= now - o.at <= self.stale_after_s and self._concurrency(o) is not None]
        if not fresh:
            return current_replicas
        # Observations arrive every control interval; each carries the concurrency of its scrape, so the windows
        # average those in them (the window is a multiple of the 2 s tick).
        stable = self._window_mean(now, observations, self.stable_window_s) or 0.0
        panic = self._window_mean(now, observations, self.panic_window_s) or 0.0
        desired_stable = math.ceil(stable / self.target_concurrency_per_replica - 1e-9)
        desired_panic = math.ceil(panic / self.target_concurrency_per_replica - 1e-9)
        ready = max(1, max(fresh, key=lambda o: o.at).ready_replicas)
        if desired_panic >= self.panic_threshold * ready:
            self._panic_since = now
        elif self._panic_since is not None and now - self._panic_since >= self.stable_window_s:
            self._panic_since = None
        desired = max(desired_panic, current_replicas) if self._panic_since is not None else desired_stable
        desired = min(desired, math.ceil(ready * self.max_scale_up_rate))
        desired = max(desired, math.floor(ready / self.max_scale_down_rate))
        return min(max(desired, self.min_replicas), self.max_replicas)


@dataclass
class StaticScaler:
    """Static provisioning: always the same replicas (the simulator sizes it for the trace's peak)."""

    replicas: int
    name: str = "static-peak"

    def decide(self, now: float, observations: Sequence[Observation], current_replicas: int) -> int:
        return self.replicas


@dataclass(frozen=True)
class OraclePlan:
    """The hindsight oracle's schedule: ready and paid replicas per step and how many scaling actions it took."""

    ready: np.ndarray
    paid: np.ndarray
    actions: int


def slo_service_curve(work: np.ndarray, slo_s: float, step_s: float = 1.0) -> np.ndarray:
    """The smoothest cumulative service (at each step boundary) under which no work waits longer than ``slo_s``.

    Service can never run ahead of arrivals (upper curve: work arrived by each boundary) and must have served,
    by each boundary, all work that arrived ``slo_s`` earlier (lower curve), and all of it by the end. The taut
    string between the two, from 0 at time 0, is the feasible curve that minimises every convex cost of its rate
    (Σ rate², the peak rate); it is built segment by segment: from an anchor, extend a straight line until the upper curve
    drops below the steepest line the lower curve needs (bend at the lower point that needed it) or the lower curve
    rises above the flattest line the upper curve allows (bend at that upper point); past the last crossing the
    string wraps the lower curve's points to the end.
    """
    upper = np.concatenate(([0.0], np.cumsum(work * step_s)))
    times = np.arange(len(upper)) * step_s
    lower = np.interp(times - slo_s, times, upper, left=0.0)
    lower[-1] = upper[-1]  # everything served by the end: after it, no capacity is promised
    n = len(upper) - 1
    curve = np.empty(n + 1)
    curve[0] = 0.0
    anchor, height = 0, 0.0
    chunk = 256
    while anchor < n:
        stop = min(n, anchor + chunk)
        span = np.arange(1, stop - anchor + 1, dtype=float)
        hi = np.minimum.accumulate((upper[anchor + 1:stop + 1] - height) / span)
        lo = np.maximum.accumulate((lower[anchor + 1:stop + 1] - height) / span)
        crossed = np.flatnonzero(hi < lo - 1e-12 * np.maximum(1.0, np.abs(lo)))
        if len(crossed) == 0:
            if stop < n:
                chunk *= 2
                continue
            # Free end: as flat as the lower curve allows, wrapping its points up to the end.
            if lo[-1] <= 0:
                curve[anchor + 1:] = height
                break
            slope = float(lo[-1])
            bend = anchor + 1 + int(np.flatnonzero(lo == lo[-1])[0])
            curve[anchor + 1:bend + 1] = height + slope * np.arange(1, bend - anchor + 1)
            anchor, height = bend, float(curve[bend])
            chunk = 256
            continue
        c = int(crossed[0])
        if c == 0:  # cannot happen (upper >= lower), but a float tie must not stall the loop
            bend, slope = anchor + 1, float(hi[0])
        elif hi[c] < hi[c - 1]:  # the upper curve came down: the string wraps the lower point that needed lo
            slope = float(lo[c - 1])
            bend = anchor + 1 + int(np.flatnonzero(lo[:c] == lo[c - 1])[0])
        else:  # the lower curve came up: the string wraps the upper point that allowed hi
            slope = float(hi[c - 1])
            bend = anchor + 1 + int(np.flatnonzero(hi[:c] == hi[c - 1])[0])
        curve[anchor + 1:bend + 1] = height + slope * np.arange(1, bend - anchor + 1)
        anchor, height = bend, float(curve[bend])
        chunk = 256
    return np.minimum(np.maximum(curve, lower), upper)


def slo_needed_replicas(work: np.ndarray, capacity_tokens_per_s: float, slo_s: float,
                        step_s: float = 1.0) -> np.ndarray:
    """Fewest ready replicas per step whose work-conserving service stays on or above `slo_service_curve`."""
    curve = slo_service_curve(work, slo_s, step_s).tolist()
    arrived = np.concatenate(([0.0], np.cumsum(work * step_s))).tolist()
    per_replica = capacity_tokens_per_s * step_s
    needed = np.zeros(len(work), dtype=int)
    served = 0.0
    for i in range(len(work)):
        short = curve[i + 1] - served
        replicas = max(0, math.ceil(short / per_replica - 1e-9)) if short > 1e-9 * max(1.0, curve[i + 1]) else 0
        needed[i] = replicas
        served = min(arrived[i + 1], served + replicas * per_replica)
    return needed


class _SloCheck:
    """Whether lowering a schedule's ready replicas within [start, end) keeps every due request within the SLO.

    Only the work still queued at ``start`` and the steps until the lowered schedule's backlog is back on the
    current one's can wait longer (capacity is only taken away, so the backlog only grows, and once equal
    everything after is the same), so only those are replayed.
    """

    def __init__(self, work: np.ndarray, ready: np.ndarray, capacity: float, slo_s: float, step_s: float):
        self.work, self.capacity, self.slo_s, self.step_s = work, capacity, slo_s, step_s
        self.accept(ready)

    def accept(self, ready: np.ndarray) -> None:
        self.ready = ready
        self.backlog = fluid_backlog(self.work, ready * self.capacity, self.step_s)
        waits = queue_waits(self.work, ready * self.capacity, self.step_s)
        self.finish = (np.arange(len(self.work)) + 1) * self.step_s + waits  # FCFS: never decreasing

    def holds(self, trial: np.ndarray, first: int, end: int) -> bool:
        n = len(self.work)
        # Replay from the oldest work still queued when the lowered stretch begins.
        start = min(first, int(np.searchsorted(self.finish, first * self.step_s + 1e-9, side="right")))
        before = float(self.backlog[start - 1]) if start > 0 else 0.0
        stop = min(n, end + max(64, end - start))
        while True:
            work = np.concatenate(([before / self.step_s], self.work[start:stop]))
            capacity = np.concatenate(([0.0], trial[start:stop] * self.capacity))
            backlog = fluid_backlog(work, capacity, self.step_s)[1:]
            current = self.backlog[start:stop]
            tolerance = 1e-6 * np.maximum(1.0, current[end - start:])
            same = np.flatnonzero(np.abs(backlog - current)[end - start:] <= tolerance)
            if len(same) or stop == n:
                break
            stop = min(n, stop + 2 * (stop - start))
        cut = start + (end - start) + int(same[0]) + 1 if len(same) else n
        waits = queue_waits(work[:cut - start + 1], capacity[:cut - start + 1], self.step_s)[1:]
        if cut < n:  # work still queued at the cut is served as before, within the SLO
            waits = np.where((np.arange(cut - start) + 1) * self.step_s + waits <= (cut - start) * self.step_s + 1e-9,
                             waits, 0.0)
        # As every schedule is scored: work still queued at the end is served at the last step's capacity.
        return bool(waits.max(initial=0.0) <= self.slo_s + 1e-9)


def _lower(work: np.ndarray, ready: np.ndarray, capacity: float, slo_s: float, step_s: float,
           floor: int) -> np.ndarray:
    """Local search from a feasible schedule: top level first, drop each stretch of it, or as much of its start and
    its end as the SLO allows, until no stretch can be lowered."""
    check = _SloCheck(work, ready.copy(), capacity, slo_s, step_s)
    changed = True
    while changed:
        changed = False
        for level in range(int(check.ready.max(initial=0)), floor, -1):
            above = (check.ready >= level).astype(int)
            edges = np.flatnonzero(np.diff(np.concatenate(([0], above, [0]))))
            for start, end in zip(edges[::2].tolist(), edges[1::2].tolist()):
                ready = check.ready
                if check.ready[start] < level:  # an earlier change of this pass lowered it already
                    continue
                lowered = ready.copy()
                lowered[start:end] -= 1
                if check.holds(lowered, start, end):
                    check.accept(lowered)
                    changed = True
                    continue
                low, high = start, end - 1  # the longest head [start, k) that can go
                while low < high:
                    mid = (low + high + 1) // 2
                    trial = ready.copy()
                    trial[start:mid] -= 1
                    low, high = (mid, high) if check.holds(trial, start, mid) else (low, mid - 1)
                if low > start:
                    ready = ready.copy()
                    ready[start:low] -= 1
                    check.accept(ready)
                    changed = True
                low, high = max(low, start + 1), end  # the longest tail [k, end) that can go
                while low < high:
                    mid = (low + high) // 2
                    trial = ready.copy()
                    trial[mid:end] -= 1
                    low, high = (low, mid) if check.holds(trial, mid, end) else (mid + 1, high)
                if low < end:
                    ready = ready.copy()
                    ready[low:end] -= 1
                    check.accept(ready)
                    changed = True
    return check.ready


def pay_for_ready(needed: np.ndarray, lead: int) -> OraclePlan:
    """The cheapest way to have ``needed`` ready replicas per step when a replica takes ``lead`` steps to start.

    Replicas are interchangeable, so it is optimal level by level: the k-th replica must be ready whenever k or
    more are needed; each stretch of need is paid from one cold start before it (except a stretch already running
    at time 0), and a gap shorter than a cold start is cheaper to keep paying for than to restart after.
    """
    steps = len(needed)
    ready_delta = np.zeros(steps + 1, dtype=int)
    paid_delta = np.zeros(steps + 1, dtype=int)
    for level in range(1, int(needed.max(initial=0)) + 1):
        above = needed >= level
        edges = np.flatnonzero(np.diff(np.concatenate(([0], above.astype(int), [0]))))
        merged: list[list[int]] = []
        for start, end in zip(edges[::2].tolist(), edges[1::2].tolist()):
            if merged and start - merged[-1][1] < lead:
                merged[-1][1] = end
            else:
                merged.append([start, end])
        for start, end in merged:
            ready_delta[start] += 1
            ready_delta[end] -= 1
            paid_delta[max(0, start - lead) if start > 0 else 0] += 1
            paid_delta[end] -= 1
    paid = np.cumsum(paid_delta)[:steps]
    return OraclePlan(np.cumsum(ready_delta)[:steps], paid, int(np.count_nonzero(np.diff(paid))))


def oracle_plan(work_tokens_per_s: np.ndarray, capacity_tokens_per_s: float, cold_start_s: float,
                slo_s: float = 0.0, step_s: float = 1.0, min_replicas: int = 1) -> OraclePlan:
    """The SLO oracle: a hindsight schedule in which no work waits longer than ``slo_s`` (README, "SLO oracle").

    1. Ready replicas per step: `slo_needed_replicas` (service following the smoothest feasible curve; with
       ``slo_s`` = 0, ceil(demand / capacity)), paid for by `pay_for_ready`.
    2. With ``slo_s`` > 0, `_lower` then takes away every stretch of a level (or its head or tail) whose work the
       queue can still serve within the SLO on the remaining replicas, and `pay_for_ready` pays for the result.
    """
    needed = np.maximum(slo_needed_replicas(work_tokens_per_s, capacity_tokens_per_s, slo_s, step_s), min_replicas)
    lead = int(math.ceil(cold_start_s / step_s))
    plan = pay_for_ready(needed, lead)
    if slo_s <= 0 or len(needed) == 0:
        return plan
    lowered = _lower(np.asarray(work_tokens_per_s, dtype=float), plan.ready, capacity_tokens_per_s, slo_s, step_s,
                     min_replicas)
    return pay_for_ready(lowered, lead)
