"""Replay a demand trace through a scaler with a replica, metric and queue model, in simulated time.

Model, per step of the trace (1 s):
- Work is counted in generated-token equivalents: a step's demand is its generated tokens plus its prompt tokens at
  their prefill cost (`capacity.ReplicaModel`). A ready replica serves ``capacity_tokens_per_s`` of work a second;
  it is paid for from the moment it is asked for and becomes ready one cold start later. A scale-down removes
  starting replicas first (as a ReplicaSet deletes not-ready pods first) and takes effect at once.
- Work that ready capacity cannot serve waits in one first-come-first-served queue (a fluid: requests are served in
  arrival order, each step's work after all earlier work). A step's queueing delay is how long its last unit of work
  waits past the step's end until served (`queue_waits`).
- The engines export what vLLM exports: a served-token counter (generated + prompt at prefill cost; a rate of it
  saturates at ready capacity), ``num_requests_waiting`` (queued work ÷ work per request),
  ``num_requests_running`` (each replica runs up to ``max_num_seqs`` sequences; running = served work ÷ capacity ×
  max_num_seqs), ``kv_cache_usage_perc`` (running ÷ sequence slots of the ready replicas) and a finished-request
  counter (the requests whose work the served counter has covered, in arrival order). Each scaler reads
  them at its own scrape and control intervals (Prometheus at 15 s for the policy and the HPA; Knative's
  queue-proxy every second).
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
from neuroscale.autoscale.floor import reactive_floor
from neuroscale.autoscale.measured_capacity import CAPACITY_SPAN_S
from neuroscale.autoscale.policy import Observation, PolicyConfig
from neuroscale.autoscale.queueing import queue_waits
from neuroscale.autoscale.traces import DemandTrace

__all__ = ["RunMetrics", "ScalerRun", "SimulationSettings", "compare", "demand_work", "opening_fleet", "peak_replicas",
           "queue_waits", "run_floor", "run_oracle", "score", "simulate"]  # queue_waits: re-exported from queueing, where the oracle reads it too


@dataclass(frozen=True)
class SimulationSettings:
    """The replica, metric and service-level model shared by every scaler in one comparison."""

    capacity_tokens_per_s: float
    cold_start_s: float
    slo_s: float = 10.0
    prefill_tokens_per_s: float = math.inf
    max_num_seqs: int = 8
    scrape_interval_s: float = 15.0
    metric_window_s: float = 120.0
    control_interval_s: float = 15.0
    price_per_hour: float | None = None
    min_replicas: int = 1
    max_replicas: int | None = None
    utilization: float = 0.85

    def __post_init__(self) -> None:
        if not (math.isfinite(self.capacity_tokens_per_s) and self.capacity_tokens_per_s > 0):
            raise ValueError(f"capacity must be a positive number of tokens/s, got {self.capacity_tokens_per_s}")
        if not self.prefill_tokens_per_s > 0:
            raise ValueError(f"prefill rate must be a positive number of tokens/s, got {self.prefill_tokens_per_s}")
        if not (math.isfinite(self.cold_start_s) and self.cold_start_s >= 0):
            raise ValueError(f"cold start must be >= 0 seconds, got {self.cold_start_s}")
        if not (math.isfinite(self.slo_s) and self.slo_s >= 0):
            raise ValueError(f"the queueing SLO must be >= 0 seconds, got {self.slo_s}")
        for name in ("scrape_interval_s", "metric_window_s", "control_interval_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.metric_window_s < 2 * self.scrape_interval_s:
            raise ValueError("metric_window_s must span at least two scrapes for a rate to exist")
        if not 0 < self.utilization <= 1:
            raise ValueError(f"utilization must be in (0, 1], got {self.utilization}")
        if self.price_per_hour is not None and not self.price_per_hour >= 0:
            raise ValueError(f"price per hour must be >= 0, got {self.price_per_hour}")
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")

    @property
    def prefill_cost(self) -> float:
        """Generated-token equivalents of one prompt token."""
        return self.capacity_tokens_per_s / self.prefill_tokens_per_s


def demand_work(trace: DemandTrace, settings: SimulationSettings) -> np.ndarray:
    """Work asked for per second: generated tokens + prompt tokens × their prefill cost."""
    return trace.tokens_per_s + settings.prefill_cost * trace.prompt_tokens_per_s  # type: ignore[operator]


@dataclass(frozen=True)
class RunMetrics:
    """The figures the README defines, for one scaler on one trace."""

    replica_hours: float
    cost: float | None
    wait_p50_s: float
    wait_p99_s: float
    slo_miss_fraction: float
    max_wait_s: float
    shortfall_fraction: float
    actions: int
    peak_replicas: int

    def to_dict(self) -> dict[str, float | int | None]:
        return {
            "replica_hours": round(self.replica_hours, 4),
            "cost_usd": None if self.cost is None else round(self.cost, 4),
            "wait_p50_s": round(self.wait_p50_s, 2),
            "wait_p99_s": round(self.wait_p99_s, 2),
            "slo_miss_pct": round(100 * self.slo_miss_fraction, 4),
            "max_wait_s": round(self.max_wait_s, 1),
            "shortfall_pct": round(100 * self.shortfall_fraction, 4),
            "scaling_actions": self.actions,
            "peak_replicas": self.peak_replicas,
        }


@dataclass(frozen=True)
class ScalerRun:
    """One scaler's replay: per-step ready and paid replicas, queueing delay per step, and the summary figures."""

    name: str
    ready: np.ndarray
    paid: np.ndarray
    wait_s: np.ndarray
    metrics: RunMetrics


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    total = float(weights.sum())
    if total <= 0:
        return 0.0
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[order])
    return float(values[order][min(int(np.searchsorted(cumulative, q * total, side="left")), len(values) - 1)])


def score(trace: DemandTrace, settings: SimulationSettings, ready: np.ndarray, paid: np.ndarray,
          actions: int) -> tuple[np.ndarray, RunMetrics]:
    """Queueing delay per step and the README's figures of a schedule of ``ready`` and ``paid`` replicas."""
    work = demand_work(trace, settings)
    capacity = ready * settings.capacity_tokens_per_s
    waits = queue_waits(work, capacity, trace.step_s)
    requests = trace.requests_per_s
    total_requests = float(requests.sum())  # type: ignore[union-attr]
    total_work = float(work.sum())
    replica_hours = float(paid.sum()) * trace.step_s / 3600
    finite = np.where(np.isfinite(waits), waits, trace.duration_s)
    return waits, RunMetrics(
        replica_hours=replica_hours,
        cost=None if settings.price_per_hour is None else replica_hours * settings.price_per_hour,
        wait_p50_s=_weighted_quantile(finite, work, 0.50),
        wait_p99_s=_weighted_quantile(finite, work, 0.99),
        slo_miss_fraction=float(requests[waits > settings.slo_s + 1e-9].sum()) / total_requests  # type: ignore[index]
        if total_requests > 0 else 0.0,
        max_wait_s=float(finite.max(initial=0.0)),
        shortfall_fraction=float(np.maximum(work - capacity, 0).sum()) / total_work if total_work > 0 else 0.0,
        actions=actions,
        peak_replicas=int(paid.max(initial=0)),
    )


def simulate(trace: DemandTrace, scaler: Scaler, settings: SimulationSettings, initial_replicas: int,
             on_progress: Callable[[int], None] | None = None) -> ScalerRun:
    """Replay ``trace`` through ``scaler``; every scaler starts with ``initial_replicas`` warm replicas."""
    work = demand_work(trace, settings)
    step = trace.step_s
    steps = len(work)
    scrape_s = getattr(scaler, "scrape_interval_s", None) or settings.scrape_interval_s
    control_s = getattr(scaler, "control_interval_s", None) or settings.control_interval_s
    window_s = max(getattr(scaler, "metric_window_s", None) or settings.metric_window_s, 2 * scrape_s)
    scrape_every = max(1, round(scrape_s / step))
    control_every = max(1, round(control_s / step))
    total_requests = float(trace.requests_per_s.sum())  # type: ignore[union-attr]
    per_request = float(work.sum()) / total_requests if total_requests > 0 else 1.0
    capacity = settings.capacity_tokens_per_s
    seqs = settings.max_num_seqs
    # What the operator remembers (512 reads): enough for the policy's longest look back, its capacity measurement.
    memory_s = max(settings.cold_start_s, 300.0, CAPACITY_SPAN_S) + window_s + 2 * control_s

    ready_at: list[float] = [-math.inf] * initial_replicas
    # Before t=0 the service ran steadily at the opening demand, so the first rate is already defined.
    opening = float(work[: max(1, int(window_s / step))].mean())
    served_rate = min(opening, initial_replicas * capacity)
    scrapes = int(window_s / scrape_s)
    # The finished-request counter: requests are done in arrival order once the served counter covers their work.
    arrived_work = np.concatenate(([0.0], np.cumsum(work * step)))
    arrived_requests = np.concatenate(([0.0], np.cumsum(trace.requests_per_s * step)))  # type: ignore[operator]
    samples: deque[tuple[float, float, float, float, int, float]] = deque(
        (-k * scrape_s, -k * scrape_s * served_rate, 0.0, served_rate / capacity * seqs, initial_replicas,
         -k * scrape_s * served_rate / per_request)
        for k in range(scrapes, 0, -1))
    observations: deque[Observation] = deque()
    counter = backlog = 0.0
    last_served = served_rate * step
    actions = 0
    ready = np.empty(steps, dtype=int)
    paid = np.empty(steps, dtype=int)
    capacity_step = capacity * step
    work_steps = (work * step).tolist()
    for i in range(steps):
        now = i * step
        ready_now = bisect_right(ready_at, now)
        if i % scrape_every == 0:
            running = min(last_served / capacity_step * seqs, ready_now * seqs)
            finished = float(np.interp(counter, arrived_work, arrived_requests))
            samples.append((now, counter, backlog / per_request, running, ready_now, finished))
            while samples[0][0] <= now - window_s:
                samples.popleft()
        if i % control_every == 0:
            observations.append(_observe(now, samples, ready_now, seqs))
            while observations[0].at < now - memory_s:
                observations.popleft()
            wanted = max(0, int(scaler.decide(now, tuple(observations), len(ready_at))))
            if wanted != len(ready_at):
                actions += 1
                if wanted > len(ready_at):
                    ready_at.extend([now + settings.cold_start_s] * (wanted - len(ready_at)))
                else:
                    del ready_at[wanted:]
                ready_now = bisect_right(ready_at, now)
            if on_progress is not None:
                on_progress(control_every)
        available = backlog + work_steps[i]
        last_served = min(available, ready_now * capacity_step)
        backlog = available - last_served
        counter += last_served
        ready[i], paid[i] = ready_now, len(ready_at)
    waits, metrics = score(trace, settings, ready, paid, actions)
    return ScalerRun(scaler.name, ready, paid, waits, metrics)


def _observe(now: float, samples: deque[tuple[float, float, float, float, int, float]], ready: int,
             seqs: int) -> Observation:
    first, last = samples[0], samples[-1]
    span = last[0] - first[0]
    slots = last[4] * seqs
    return Observation(at=now, tokens_per_second=(last[1] - first[1]) / span if span > 0 else None,
                       queue_depth=last[2], ready_replicas=ready, running=last[3],
                       kv_cache_usage=last[3] / slots if slots else None,
                       requests_per_second=(last[5] - first[5]) / span if span > 0 else None)


def run_oracle(trace: DemandTrace, settings: SimulationSettings) -> ScalerRun:
    """The SLO oracle's schedule (`baselines.oracle_plan`), scored with the same figures as the scalers."""
    plan: OraclePlan = oracle_plan(demand_work(trace, settings), settings.capacity_tokens_per_s,
                                   settings.cold_start_s, settings.slo_s, trace.step_s, settings.min_replicas)
    waits, metrics = score(trace, settings, plan.ready, plan.paid, plan.actions)
    return ScalerRun("oracle", plan.ready, plan.paid, waits, metrics)


def run_floor(trace: DemandTrace, settings: SimulationSettings, headroom: float = 1.0) -> ScalerRun:
    """The reactive floor (`floor.reactive_floor`: exact demand, instant orders, a cold start, no foresight)."""
    floor = reactive_floor(demand_work(trace, settings), trace.requests_per_s,  # type: ignore[arg-type]
                           settings.capacity_tokens_per_s, settings.cold_start_s, settings.slo_s, trace.step_s,
                           headroom=headroom, min_replicas=settings.min_replicas,
                           opening_s=settings.metric_window_s)
    _, metrics = score(trace, settings, floor.plan.ready, floor.plan.paid, floor.plan.actions)
    return ScalerRun("reactive-floor", floor.plan.ready, floor.plan.paid, floor.wait_s, metrics)


def peak_replicas(trace: DemandTrace, settings: SimulationSettings) -> int:
    """Replicas that serve the trace's highest step of demand at full capacity."""
    return max(settings.min_replicas, math.ceil(float(demand_work(trace, settings).max())
                                                / settings.capacity_tokens_per_s - 1e-9))


def opening_fleet(trace: DemandTrace, settings: SimulationSettings, config: PolicyConfig) -> int:
    """The replicas every dynamic scaler starts with: what the shared utilization target needs for the opening
    demand (the mean work of the first rate window), within the config's [min, max]."""
    work = demand_work(trace, settings)
    opening = float(work[: max(1, int(settings.metric_window_s / trace.step_s))].mean())
    target = settings.capacity_tokens_per_s * settings.utilization
    return min(max(math.ceil(opening / target - 1e-9), config.min_replicas), config.max_replicas)


def compare(trace: DemandTrace, settings: SimulationSettings, config: PolicyConfig,
            on_progress: Callable[[int], None] | None = None) -> list[ScalerRun]:
    """Run neuroscale, KEDA + HPA, Knative's KPA, static peak, the SLO oracle and the reactive floor on one trace.

    The baselines are configured as their documentation recommends (README), allowed the same utilization target
    of the same per-replica capacity as neuroscale. Every dynamic scaler starts with the replicas that target
    needs for the opening demand.
    """
    target = settings.capacity_tokens_per_s * settings.utilization
    initial = opening_fleet(trace, settings, config)
    static = peak_replicas(trace, settings)
    scalers: list[tuple[Scaler, int]] = [
        (NeuroscaleScaler(config), initial),
        (HpaScaler(target, config.min_replicas, config.max_replicas), initial),
        (KpaScaler(settings.max_num_seqs * settings.utilization, config.min_replicas, config.max_replicas), initial),
        (StaticScaler(static), static),
    ]
    runs = [simulate(trace, scaler, settings, replicas, on_progress) for scaler, replicas in scalers]
    runs.append(run_oracle(trace, settings))
    runs.append(run_floor(trace, settings))
    return runs
