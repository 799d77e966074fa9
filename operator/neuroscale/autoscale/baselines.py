"""The scalers neuroscale is measured against (HPA-style, KPA-style, static peak, hindsight oracle) and the adapter
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

__all__ = ["HpaScaler", "KpaScaler", "NeuroscaleScaler", "OraclePlan", "Scaler", "StaticScaler", "oracle_plan"]


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
    """Kubernetes HPA (what KEDA's Prometheus scaler drives) with its documented default behaviour.

    Metric: the deployment's generated tokens/s as an External metric with an AverageValue target, so
    desired = ceil(metric / target); no change while |metric / (target × current) − 1| <= tolerance (0.1).
    Scale-up: no stabilization, at most max(+100 %, +4 pods) per 15 s period. Scale-down: the highest
    recommendation of the last 300 s, at most −100 % per 15 s. A missing metric means no change.
    """

    target_tokens_per_replica: float
    min_replicas: int
    max_replicas: int
    tolerance: float = 0.1
    scale_down_stabilization_s: float = 300.0
    stale_after_s: float = 45.0
    name: str = "hpa"

    def __post_init__(self) -> None:
        self._recommendations: list[tuple[float, int]] = []

    def decide(self, now: float, observations: Sequence[Observation], current_replicas: int) -> int:
        tokens = _latest_tokens(now, observations, self.stale_after_s)
        if tokens is None:
            return current_replicas
        ratio = tokens / (self.target_tokens_per_replica * max(current_replicas, 1))
        if current_replicas > 0 and abs(ratio - 1) <= self.tolerance:
            recommendation = current_replicas
        else:
            recommendation = math.ceil(tokens / self.target_tokens_per_replica - 1e-9)
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
    """Knative/AIBrix KPA: stable and panic windows over the same tokens/s metric, as AIBrix documents it.

    desired_stable = ceil(mean over the stable window (180 s) / target); desired_panic likewise over the panic
    window (60 s). Panic starts when desired_panic >= panic_threshold (2.0) × ready replicas and lasts a stable
    window after the last trigger; in panic the scaler follows desired_panic but never scales down.
    Rates: at most ×1000 up and ÷2 down per decision (Knative's max-scale-up/down-rate defaults).
    """

    target_tokens_per_replica: float
    min_replicas: int
    max_replicas: int
    stable_window_s: float = 180.0
    panic_window_s: float = 60.0
    panic_threshold: float = 2.0
    max_scale_up_rate: float = 1000.0
    max_scale_down_rate: float = 2.0
    stale_after_s: float = 45.0
    name: str = "kpa"

    def __post_init__(self) -> None:
        self._panic_since: float | None = None

    def _window_mean(self, now: float, observations: Sequence[Observation], window_s: float) -> float | None:
        values = [o.tokens_per_second for o in observations
                  if o.tokens_per_second is not None and 0 <= now - o.at < window_s]
        return sum(values) / len(values) if values else None

    def decide(self, now: float, observations: Sequence[Observation], current_replicas: int) -> int:
        if _latest_tokens(now, observations, self.stale_after_s) is None:
            return current_replicas
        stable = self._window_mean(now, observations, self.stable_window_s) or 0.0
        panic = self._window_mean(now, observations, self.panic_window_s) or 0.0
        desired_stable = math.ceil(stable / self.target_tokens_per_replica - 1e-9)
        desired_panic = math.ceil(panic / self.target_tokens_per_replica - 1e-9)
        ready = max(1, max((o.ready_replicas for o in observations if 0 <= now - o.at <= self.stale_after_s),
                           default=current_replicas))
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


def oracle_plan(demand_tokens_per_s: np.ndarray, capacity_tokens_per_s: float, cold_start_s: float,
                step_s: float = 1.0, min_replicas: int = 1) -> OraclePlan:
    """The cheapest schedule that serves every step's demand at full capacity, knowing the future.

    It needs ceil(demand / capacity) ready replicas at every step. Replicas are interchangeable, so the
    schedule is optimal level by level: the k-th replica must be ready whenever k or more are needed; each
    stretch of need is paid from one cold start before it (except a stretch already running at time 0),
    and a gap shorter than a cold start is cheaper to keep paying for than to restart after.
    """
    needed = np.maximum(np.ceil(demand_tokens_per_s / capacity_tokens_per_s - 1e-9), min_replicas).astype(int)
    steps = len(needed)
    lead = int(math.ceil(cold_start_s / step_s))
    ready_delta = np.zeros(steps + 1, dtype=int)
    paid_delta = np.zeros(steps + 1, dtype=int)
    for level in range(1, int(needed.max(initial=0)) + 1):
        above = needed >= level
        edges = np.flatnonzero(np.diff(np.concatenate(([0], above.astype(int), [0]))))
        stretches = list(zip(edges[::2].tolist(), edges[1::2].tolist()))
        merged: list[list[int]] = []
        for start, end in stretches:
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
