"""Replay a demand trace through a scaler with a replica, metric and queue model, in simulated time.

Model, per step of the trace (1 s):
- A replica serves ``capacity_tokens_per_s`` generated tokens/s once ready; it is paid for from the moment it is
  asked for, and becomes ready one cold start later. A scale-down removes starting replicas first (as a ReplicaSet
  deletes not-ready pods first) and takes effect at once.
- Demand that ready capacity cannot serve waits in a queue (in tokens) and is served later, first come first served.
- Prometheus scrapes the served-token counter and the queue every ``scrape_interval_s``; the scaler sees
  ``rate(counter[metric_window_s])`` (which saturates at ready capacity: engines count tokens they generate, not
  tokens asked for), the queue depth in requests at the last scrape, and the ready replicas, every
  ``control_interval_s``.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from neuroscale.autoscale.baselines import (HpaScaler, KpaScaler, NeuroscaleScaler, OraclePlan, Scaler,
                                            StaticScaler, oracle_plan)
from neuroscale.autoscale.policy import Observation, PolicyConfig
from neuroscale.autoscale.traces import DemandTrace

__all__ = ["RunMetrics", "ScalerRun", "SimulationSettings", "compare", "simulate", "summarize"]


@dataclass(frozen=True)
class SimulationSettings:
    """The replica and metric model shared by every scaler in one comparison."""

    capacity_tokens_per_s: float
    cold_start_s: float
    scrape_interval_s: float = 15.0
    metric_window_s: float = 120.0
    control_interval_s: float = 15.0
    price_per_hour: float | None = None
    min_replicas: int = 1
    max_replicas: int | None = None
    baseline_utilization: float = 0.85

    def __post_init__(self) -> None:
        if not (math.isfinite(self.capacity_tokens_per_s) and self.capacity_tokens_per_s > 0):
            raise ValueError(f"capacity must be a positive number of tokens/s, got {self.capacity_tokens_per_s}")
        if not (math.isfinite(self.cold_start_s) and self.cold_start_s >= 0):
            raise ValueError(f"cold start must be >= 0 seconds, got {self.cold_start_s}")
        for name in ("scrape_interval_s", "metric_window_s", "control_interval_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.metric_window_s < 2 * self.scrape_interval_s:
            raise ValueError("metric_window_s must span at least two scrapes for a rate to exist")
        if not 0 < self.baseline_utilization <= 1:
            raise ValueError(f"baseline utilization must be in (0, 1], got {self.baseline_utilization}")
        if self.price_per_hour is not None and not self.price_per_hour >= 0:
            raise ValueError(f"price per hour must be >= 0, got {self.price_per_hour}")


@dataclass(frozen=True)
class RunMetrics:
    """The figures the README defines, for one scaler on one trace."""

    replica_hours: float
    cost: float | None
    underprovisioned_fraction: float
    underprovisioned_minutes: float
    actions: int
    peak_replicas: int
    max_queue_wait_s: float

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "replica_hours": round(self.replica_hours, 4),
            "cost_usd": None if self.cost is None else round(self.cost, 4),
            "underprovisioned_demand_pct": round(100 * self.underprovisioned_fraction, 4),
            "underprovisioned_minutes": round(self.underprovisioned_minutes, 2),
            "scaling_actions": self.actions,
            "peak_replicas": self.peak_replicas,
            "max_queue_wait_s": round(self.max_queue_wait_s, 1),
        }


@dataclass(frozen=True)
class ScalerRun:
    """One scaler's replay: per-step ready and paid replicas, queued tokens, and the summary figures."""

    name: str
    ready: np.ndarray
    paid: np.ndarray
    queue_tokens: np.ndarray
    metrics: RunMetrics


def _fluid_queue(demand: np.ndarray, capacity: np.ndarray, step_s: float) -> np.ndarray:
    backlog = 0.0
    queue = np.empty(len(demand))
    for i, (asked, able) in enumerate(zip((demand * step_s).tolist(), (capacity * step_s).tolist())):
        backlog = max(0.0, backlog + asked - able)
        queue[i] = backlog
    return queue


def summarize(demand: np.ndarray, ready: np.ndarray, paid: np.ndarray, queue_tokens: np.ndarray, actions: int,
              settings: SimulationSettings, step_s: float) -> RunMetrics:
    """Cost and under-provisioning of a schedule against the demand it served (definitions in the README)."""
    capacity = ready * settings.capacity_tokens_per_s
    short = demand > capacity + 1e-9
    replica_hours = float(paid.sum()) * step_s / 3600
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = np.where(queue_tokens > 0, queue_tokens / np.maximum(capacity, 1e-9), 0.0)
    total = float(demand.sum())
    return RunMetrics(
        replica_hours=replica_hours,
        cost=None if settings.price_per_hour is None else replica_hours * settings.price_per_hour,
        underprovisioned_fraction=float(np.maximum(demand - capacity, 0).sum()) / total if total > 0 else 0.0,
        underprovisioned_minutes=float(short.sum()) * step_s / 60,
        actions=actions,
        peak_replicas=int(paid.max(initial=0)),
        max_queue_wait_s=float(min(wait.max(initial=0.0), len(demand) * step_s)),
    )


def simulate(trace: DemandTrace, scaler: Scaler, settings: SimulationSettings, initial_replicas: int,
             on_progress: Callable[[int], None] | None = None) -> ScalerRun:
    """Replay ``trace`` through ``scaler``; every scaler starts with ``initial_replicas`` warm replicas."""
    demand = trace.tokens_per_s
    step = trace.step_s
    steps = len(demand)
    scrape_every = max(1, round(settings.scrape_interval_s / step))
    control_every = max(1, round(settings.control_interval_s / step))
    per_request = trace.tokens_per_request if trace.tokens_per_request > 0 else 1.0
    memory_s = max(settings.cold_start_s, 300.0) + settings.metric_window_s + 2 * settings.control_interval_s

    ready_at: list[float] = [-math.inf] * initial_replicas
    # Before t=0 the service ran steadily at the opening demand, so the first rate is already defined.
    opening = float(demand[: max(1, int(settings.metric_window_s / step))].mean())
    served_rate = min(opening, initial_replicas * settings.capacity_tokens_per_s)
    samples: deque[tuple[float, float, float]] = deque(
        (-k * settings.scrape_interval_s, -k * settings.scrape_interval_s * served_rate, 0.0)
        for k in range(int(settings.metric_window_s / settings.scrape_interval_s), 0, -1))
    observations: deque[Observation] = deque()
    counter = backlog = 0.0
    actions = 0
    ready = np.empty(steps, dtype=int)
    paid = np.empty(steps, dtype=int)
    queue = np.empty(steps)
    capacity_step = settings.capacity_tokens_per_s * step
    demand_steps = (demand * step).tolist()
    for i in range(steps):
        now = i * step
        if i % scrape_every == 0:
            samples.append((now, counter, backlog / per_request))
            while samples[0][0] <= now - settings.metric_window_s:
                samples.popleft()
        if i % control_every == 0:
            observations.append(_observe(now, samples, bisect_right(ready_at, now)))
            while observations[0].at < now - memory_s:
                observations.popleft()
            wanted = max(0, int(scaler.decide(now, tuple(observations), len(ready_at))))
            if wanted != len(ready_at):
                actions += 1
                if wanted > len(ready_at):
                    ready_at.extend([now + settings.cold_start_s] * (wanted - len(ready_at)))
                else:
                    del ready_at[wanted:]
            if on_progress is not None:
                on_progress(control_every)
        ready_now = bisect_right(ready_at, now)
        available = backlog + demand_steps[i]
        served = min(available, ready_now * capacity_step)
        backlog = available - served
        counter += served
        ready[i], paid[i], queue[i] = ready_now, len(ready_at), backlog
    metrics = summarize(demand, ready, paid, queue, actions, settings, step)
    return ScalerRun(scaler.name, ready, paid, queue, metrics)


def _observe(now: float, samples: deque[tuple[float, float, float]], ready: int) -> Observation:
    first, last = samples[0], samples[-1]
    tokens = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else None
    return Observation(at=now, tokens_per_second=tokens, queue_depth=last[2], ready_replicas=ready)


def run_oracle(trace: DemandTrace, settings: SimulationSettings) -> ScalerRun:
    """The hindsight oracle's schedule, scored with the same figures as the scalers."""
    plan: OraclePlan = oracle_plan(trace.tokens_per_s, settings.capacity_tokens_per_s, settings.cold_start_s,
                                   trace.step_s, settings.min_replicas)
    capacity = plan.ready * settings.capacity_tokens_per_s
    queue = _fluid_queue(trace.tokens_per_s, capacity, trace.step_s)
    metrics = summarize(trace.tokens_per_s, plan.ready, plan.paid, queue, plan.actions, settings, trace.step_s)
    return ScalerRun("oracle", plan.ready, plan.paid, queue, metrics)


def peak_replicas(trace: DemandTrace, settings: SimulationSettings) -> int:
    """Replicas that serve the trace's highest step of demand at full capacity."""
    return max(settings.min_replicas, math.ceil(float(trace.tokens_per_s.max()) / settings.capacity_tokens_per_s
                                                - 1e-9))


def compare(trace: DemandTrace, settings: SimulationSettings, config: PolicyConfig,
            on_progress: Callable[[int], None] | None = None) -> list[ScalerRun]:
    """Run neuroscale, the HPA- and KPA-style baselines, static peak and the oracle on one trace.

    The reactive baselines are configured as a user would: a fixed target of ``baseline_utilization`` of the
    same per-replica capacity, on the same metric, scrape and lag as neuroscale. Every dynamic scaler starts with
    the replicas that target needs for the opening demand.
    """
    target = settings.capacity_tokens_per_s * settings.baseline_utilization
    opening = float(trace.tokens_per_s[: max(1, int(settings.metric_window_s / trace.step_s))].mean())
    initial = min(max(math.ceil(opening / target - 1e-9), config.min_replicas), config.max_replicas)
    scalers: list[tuple[Scaler, int]] = [
        (NeuroscaleScaler(config), initial),
        (HpaScaler(target, config.min_replicas, config.max_replicas, stale_after_s=config.stale_after_s), initial),
        (KpaScaler(target, config.min_replicas, config.max_replicas, stale_after_s=config.stale_after_s), initial),
        (StaticScaler(peak_replicas(trace, settings)), peak_replicas(trace, settings)),
    ]
    runs = [simulate(trace, scaler, settings, replicas, on_progress) for scaler, replicas in scalers]
    runs.append(run_oracle(trace, settings))
    return runs
