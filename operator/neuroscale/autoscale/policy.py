"""The token-throughput autoscaling policy: observations + state + config in, a replica decision and its reason out.

The rule, in the words the README uses:

1. Demand is the work the engines serve (a 2-minute rate of generated tokens plus prompt tokens at their prefill
   cost) plus the queue: every ``queue_target_per_replica`` waiting requests ask for one more replica (by default
   derived: the requests one replica drains in ``queue_drain_s``, at the work per request measured from the
   finished-request rate).
2. Capacity takes a cold start to arrive, so with ``predictive`` on the policy provisions for the demand one
   horizon ahead, horizon = cold start + metric lag + one control interval: the current demand plus the upward
   trend over that horizon (a least-squares slope over the last horizon of samples), counting only the part of
   the slope that is there with the SLO's confidence (slope − ``safety_z`` standard errors, never negative).
3. Needed replicas = ceil(demand / target), clamped to [min, max]; target = ``target_tokens_per_replica`` ×
   u / ``utilization``, where u is a learned utilization (kept in the state): an SLO feedback loop on the queue.
   Waiting requests are direct evidence that ready capacity was exceeded, which a 2-minute rate cannot show.
   When more than ``queued_sample_allowance`` of the last horizon's samples had waiting requests, u drops by
   that share (u × (1 − share)), at most once per horizon (the capacity it asks for needs that long to show);
   after a whole horizon without waiting requests, u climbs linearly from floor to ceiling over one horizon.
   u never leaves [``utilization_floor``, ``utilization_ceiling``]; without both bounds u stays ``utilization``.
4. Up: the lowest need of the last ``scale_up_stabilization_s`` (0 by default: act at once), at most
   ``max_scale_up_step`` per decision. Down: the highest need of the last ``scale_down_stabilization_s``
   (a cold start by default: a released replica cannot come back sooner), at most ``max_scale_down_step``;
   with learned headroom and no waiting request for a whole horizon, of the last metric lag only; and only once
   the decisions remembered cover that window (a fresh start holds until then).
5. Replicas already asked for but not yet ready count as arriving capacity: they are never asked for twice.
6. No fresh sample (missing metric, stale sample, Prometheus down): hold the current replicas (clamped to
   [min, max]); never scale down, never to zero, on missing data.

With ``headroom_quantile`` set (`default_config` sets it; README "Headroom"), steps 2–3 become: needed =
ceil(demand + headroom), demand in replicas at full capacity = served tokens/s + the queue's growth over one rate
window + the queue ÷ ``queue_target_per_replica``; headroom = that quantile of the demand's growth over one
horizon, learned online in the state, less the queue's SLO slack over a horizon while the SLO is met, capped at
``headroom_cap`` × demand.

With ``calibrate_capacity`` (`default_config` sets it), ``capacity_tokens_per_s`` is the estimate corrected by the
running and KV-cache gauges (`measured_capacity`); every step above uses the corrected figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from statistics import NormalDist
from typing import Any

from neuroscale.autoscale.measured_capacity import measured_capacity

__all__ = ["Decision", "Observation", "PolicyConfig", "ScalerState", "decide", "default_config"]


@dataclass(frozen=True)
class PolicyConfig:
    """How one ModelDeployment scales; build it with `default_config` unless the spec overrides a field."""

    min_replicas: int
    max_replicas: int
    target_tokens_per_replica: float
    queue_target_per_replica: float | None
    cold_start_s: float
    scale_up_stabilization_s: float
    scale_down_stabilization_s: float
    max_scale_up_step: int | None
    max_scale_down_step: int | None
    predictive: bool
    stale_after_s: float
    metric_lag_s: float = 60.0
    control_interval_s: float = 15.0
    safety_z: float = 2.326
    utilization: float = 1.0
    utilization_floor: float | None = None
    utilization_ceiling: float | None = None
    queued_sample_allowance: float = 0.01
    # Learned headroom (README "Headroom"): None turns it off (the utilization target alone, as before).
    headroom_quantile: float | None = None
    headroom_cap: float = 0.5
    capacity_tokens_per_s: float | None = None
    queue_wait_slo_s: float = 10.0
    tokens_per_request: float | None = None
    # Without an explicit queue_target_per_replica: the queue one replica drains in this long is its target.
    queue_drain_s: float | None = None
    # Measure capacity_tokens_per_s from the engines' gauges (`measured_capacity`, README "Measured capacity");
    # max_num_seqs turns num_requests_running into a busy share of the fleet.
    calibrate_capacity: bool = False
    max_num_seqs: int | None = None

    def __post_init__(self) -> None:
        problems = []
        if self.min_replicas < 0:
            problems.append(f"min_replicas must be >= 0, got {self.min_replicas}")
        if self.max_replicas < max(self.min_replicas, 1):
            problems.append(f"max_replicas must be >= max(min_replicas, 1), got {self.max_replicas}")
        if not self.target_tokens_per_replica > 0:
            problems.append(f"target_tokens_per_replica must be > 0, got {self.target_tokens_per_replica}")
        if self.queue_target_per_replica is not None and not self.queue_target_per_replica > 0:
            problems.append(f"queue_target_per_replica must be > 0 or None, got {self.queue_target_per_replica}")
        for name in ("cold_start_s", "scale_up_stabilization_s", "scale_down_stabilization_s", "metric_lag_s",
                     "control_interval_s", "safety_z"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be a finite number >= 0, got {value}")
        if not self.stale_after_s > 0:
            problems.append(f"stale_after_s must be > 0, got {self.stale_after_s}")
        for name in ("max_scale_up_step", "max_scale_down_step"):
            step = getattr(self, name)
            if step is not None and step < 1:
                problems.append(f"{name} must be >= 1 or None, got {step}")
        if not 0 < self.utilization <= 1:
            problems.append(f"utilization must be in (0, 1], got {self.utilization}")
        if (self.utilization_floor is None) != (self.utilization_ceiling is None):
            problems.append("utilization_floor and utilization_ceiling must be set together")
        elif self.utilization_floor is not None and self.utilization_ceiling is not None and not (
                0 < self.utilization_floor <= self.utilization_ceiling <= 1):
            problems.append("need 0 < utilization_floor <= utilization_ceiling <= 1, got "
                            f"{self.utilization_floor} and {self.utilization_ceiling}")
        if not 0 <= self.queued_sample_allowance < 1:
            problems.append(f"queued_sample_allowance must be in [0, 1), got {self.queued_sample_allowance}")
        capacity = self.capacity_tokens_per_s
        if self.headroom_quantile is not None and not (0 < self.headroom_quantile < 1 and capacity and capacity > 0):
            problems.append("headroom_quantile must be in (0, 1) and needs capacity_tokens_per_s > 0")
        if self.max_num_seqs is not None and self.max_num_seqs < 1:
            problems.append(f"max_num_seqs must be >= 1 or None, got {self.max_num_seqs}")
        if self.calibrate_capacity and not (capacity and capacity > 0):
            problems.append("calibrate_capacity needs capacity_tokens_per_s > 0 (the estimate it starts from)")
        if not self.headroom_cap >= 0:
            problems.append(f"headroom_cap must be >= 0, got {self.headroom_cap}")
        if problems:
            raise ValueError("invalid autoscaling config: " + "; ".join(problems))

    @property
    def horizon_s(self) -> float:
        """How far ahead a decision must look: capacity asked for now serves traffic this much later."""
        return self.cold_start_s + self.metric_lag_s + self.control_interval_s


def default_config(
    capacity_tokens_per_s: float,
    cold_start_s: float,
    *,
    min_replicas: int = 1,
    max_replicas: int = 100,
    utilization: float = 0.85,
    utilization_floor: float | None = None,
    utilization_ceiling: float | None = None,
    slo_underprovisioned_fraction: float = 0.01,
    queue_wait_slo_s: float = 10.0,
    tokens_per_request: float = 256.0,
    metric_window_s: float = 120.0,
    scrape_interval_s: float = 15.0,
    control_interval_s: float = 15.0,
    predictive: bool = True,
    learn_headroom: bool = True,
    calibrate_capacity: bool = True,
    max_num_seqs: int | None = None,
) -> PolicyConfig:
    """Derive every policy parameter from replica capacity, cold start and the SLO.

    - ``target_tokens_per_replica = capacity × utilization``. The 15 % default headroom absorbs the
      sub-minute fluctuation that a 2-minute rate cannot show (requests arrive in bursts of seconds).
    - The queue feedback loop starts at ``utilization`` and moves u within [``utilization_floor``,
      ``utilization_ceiling``]. Floor = ``utilization`` by default: the loop only gives back headroom that the
      queue shows is unused (lowering u below the default was measured to trade cost for service, row by row,
      never to win both; see tests/bench/AUTOSCALE.md). Ceiling = utilization + (1 − utilization) / 3 (0.90):
      two thirds of the headroom stay for the forecast's error over a cold start, which the queue can only
      reveal after the fact, when capacity is a cold start away.
    - ``queued_sample_allowance = slo_underprovisioned_fraction``: a sample with waiting requests is counted as
      if all of its interval's demand were short, so the allowance errs on the side of the SLO.
    - ``queue_drain_s = max(queue_wait_slo_s, cold_start_s)``: the queue target per replica is the waiting
      requests one replica drains within the queue-wait SLO, or within a cold start when that is longer (a replica
      asked for now arrives only then; a queue shorter than that drains on the capacity already there), at the
      work per request measured from the engines' finished-request rate (``tokens_per_request`` until measured).
    - ``safety_z`` = the standard-normal quantile of ``1 − slo_underprovisioned_fraction`` (2.33 for 1 %): the
      forecast extrapolates only the slope minus that many standard errors, the trend that is there with the
      SLO's confidence.
    - ``metric_lag_s = metric_window_s / 2``: a rate over a window reports the demand of its midpoint.
    - ``scale_up_stabilization_s = 0``: the metric is already a 2-minute average and every second of delay
      is added to a cold start users wait through.
    - ``scale_down_stabilization_s = min(cold_start_s + metric_lag_s, metric_window_s)`` with learned headroom (it
      already keeps the spare for a return of demand), else ``min(cold_start_s + metric_lag_s, 300)``: a released
      replica needs a cold
      start to come back, so the policy releases only what the demand of that long would not have needed, but
      never holds longer than Kubernetes' default 5 minutes: past that, the upward forecast (which also blocks
      scale-down) protects against a return of demand more cheaply than idle replicas do.
    - ``max_scale_up_step = max(4, ceil(max_replicas / 2))``: any burst reaches max within two decisions, and
      one bad sample can add at most half the fleet. ``max_scale_down_step = None``: the stabilization
      window already makes scale-down follow the slowly decaying maximum.
    - ``stale_after_s = 2 × scrape_interval_s + control_interval_s``: two missed scrapes mean the metric is gone.
    """
    if not capacity_tokens_per_s > 0:
        raise ValueError(f"capacity_tokens_per_s must be > 0, got {capacity_tokens_per_s}")
    if not 0 < utilization <= 1:
        raise ValueError(f"utilization must be in (0, 1], got {utilization}")
    floor = utilization if utilization_floor is None else utilization_floor
    ceiling = utilization + (1 - utilization) / 3 if utilization_ceiling is None else utilization_ceiling
    if not 0 < floor <= utilization <= ceiling <= 1:
        raise ValueError(f"need 0 < utilization_floor <= utilization <= utilization_ceiling <= 1, got "
                         f"{floor}, {utilization}, {ceiling}")
    if not 0 < slo_underprovisioned_fraction < 0.5:
        raise ValueError(f"slo_underprovisioned_fraction must be in (0, 0.5), got {slo_underprovisioned_fraction}")
    if not (queue_wait_slo_s > 0 and tokens_per_request > 0):
        raise ValueError("queue_wait_slo_s and tokens_per_request must be > 0")
    metric_lag_s = metric_window_s / 2
    return PolicyConfig(
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_tokens_per_replica=capacity_tokens_per_s * utilization,
        queue_target_per_replica=None,
        queue_drain_s=max(queue_wait_slo_s, cold_start_s),
        calibrate_capacity=calibrate_capacity,
        max_num_seqs=max_num_seqs,
        cold_start_s=cold_start_s,
        scale_up_stabilization_s=0.0,
        # With learned headroom the spare for a return of demand is already kept: release once a full rate window
        # confirms the lower demand.
        scale_down_stabilization_s=min(cold_start_s + metric_lag_s, metric_window_s if learn_headroom else 300.0),
        max_scale_up_step=max(4, math.ceil(max_replicas / 2)),
        max_scale_down_step=None,
        predictive=predictive,
        stale_after_s=2 * scrape_interval_s + control_interval_s,
        metric_lag_s=metric_lag_s,
        control_interval_s=control_interval_s,
        safety_z=NormalDist().inv_cdf(1 - slo_underprovisioned_fraction),
        utilization=utilization,
        utilization_floor=floor,
        utilization_ceiling=ceiling,
        queued_sample_allowance=slo_underprovisioned_fraction,
        headroom_quantile=1 - slo_underprovisioned_fraction if learn_headroom else None,
        capacity_tokens_per_s=capacity_tokens_per_s,
        queue_wait_slo_s=queue_wait_slo_s,
        tokens_per_request=tokens_per_request,
    )


@dataclass(frozen=True)
class Observation:
    """One Prometheus read at time ``at``; a None field means the metric was missing.

    ``tokens_per_second`` is the work served: generated tokens plus prompt tokens at their prefill cost
    (`capacity.ReplicaModel.work`), so prompt-heavy traffic counts. ``running`` is vLLM's ``num_requests_running``
    summed over the pods, ``kv_cache_usage`` the mean of its ``kv_cache_usage_perc`` (0..1),
    ``requests_per_second`` the rate of finished requests over the same window as the tokens; all three are
    optional (other engines do not supply them).
    """

    at: float
    tokens_per_second: float | None
    queue_depth: float | None
    ready_replicas: int
    running: float | None = None
    kv_cache_usage: float | None = None
    requests_per_second: float | None = None


@dataclass(frozen=True)
class ScalerState:
    """What the policy remembers between calls; JSON-serializable so the operator can keep it in status.

    ``scale_ups``: (time, replicas added) of recent scale-ups, to know which replicas are still starting.
    ``recommendations``: (time, replicas needed) of recent decisions, for the stabilization windows.
    ``utilization``: the learned utilization u (None: not learned yet, start from the config's);
    ``utilization_lowered_at``: when the queue last lowered it. ``capacity``: the replica capacity the gauges
    measured at the last decision (None: the configured estimate was used).
    """

    scale_ups: tuple[tuple[float, int], ...] = ()
    recommendations: tuple[tuple[float, int], ...] = ()
    last_change_at: float | None = None
    utilization: float | None = None
    utilization_lowered_at: float | None = None
    demand: tuple[tuple[float, float], ...] = ()
    growths: tuple[float, ...] = ()
    headroom: float | None = None
    slo_checks: int = 0
    slo_met: int = 0
    capacity: float | None = None

    @property
    def slo_attainment(self) -> float | None:
        """Share of control intervals whose estimated queue wait met the SLO (None before the first)."""
        return self.slo_met / self.slo_checks if self.slo_checks else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scaleUps": [[at, count] for at, count in self.scale_ups],
            "recommendations": [[at, replicas] for at, replicas in self.recommendations],
            "lastChangeAt": self.last_change_at,
            "utilization": self.utilization,
            "utilizationLoweredAt": self.utilization_lowered_at,
            "demand": [[round(at, 1), round(d, 4)] for at, d in self.demand],
            "growths": [round(g, 4) for g in self.growths],
            "headroom": None if self.headroom is None else round(self.headroom, 4),
            "sloChecks": self.slo_checks,
            "sloMet": self.slo_met,
            "capacityTokensPerSecond": None if self.capacity is None else round(self.capacity, 2),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> ScalerState:
        """Rebuild from `to_dict` output; anything malformed (hand-edited status) yields a fresh state."""
        if not isinstance(data, dict):
            return cls()
        try:
            scale_ups = tuple((float(at), int(count)) for at, count in data.get("scaleUps", []))
            recommendations = tuple((float(at), int(n)) for at, n in data.get("recommendations", []))
            last, learned, lowered = (data.get(key) for key in ("lastChangeAt", "utilization", "utilizationLoweredAt"))
            utilization = None if learned is None else float(learned)
            if utilization is not None and not 0 < utilization <= 1:
                raise ValueError(f"utilization {utilization} outside (0, 1]")
            demand = tuple((float(at), float(d)) for at, d in data.get("demand", []))
            growths = tuple(float(g) for g in data.get("growths", []))
            headroom = data.get("headroom")
            checks, met = int(data.get("sloChecks", 0)), int(data.get("sloMet", 0))
            if not 0 <= met <= checks:
                raise ValueError(f"SLO counts {met} of {checks}")
            capacity = data.get("capacityTokensPerSecond")
            return cls(scale_ups, recommendations, None if last is None else float(last), utilization,
                       None if lowered is None else float(lowered), demand, growths,
                       None if headroom is None else float(headroom), checks, met,
                       None if capacity is None else float(capacity))
        except (TypeError, ValueError):
            return cls()


@dataclass(frozen=True)
class Decision:
    """The replicas to ask for, why, the state to pass to the next call, and whether the metrics were usable."""

    replicas: int
    reason: str
    state: ScalerState
    metrics_healthy: bool


@dataclass(frozen=True)
class _Demand:
    tokens_per_second: float
    queue_depth: float
    forecast_tokens_per_second: float
    needed_now: float
    needed_ahead: float
    target_tokens_per_replica: float


def _usable(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value >= 0


def _trend(samples: Sequence[Observation]) -> tuple[float, float]:
    """Least-squares slope of tokens/s over time (tok/s per s) and its standard error."""
    n = len(samples)
    if n < 4:
        return 0.0, math.inf
    xs = [o.at for o in samples]
    ys = [float(o.tokens_per_second) for o in samples]  # type: ignore[arg-type]
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx <= 0:
        return 0.0, math.inf
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / sxx
    residual_ss = sum((y - (mean_y + slope * (x - mean_x))) ** 2 for x, y in zip(xs, ys))
    return slope, math.sqrt(residual_ss / (n - 2) / sxx)


def _clamp(replicas: int, config: PolicyConfig) -> int:
    return min(max(replicas, config.min_replicas), config.max_replicas)


def _starting(now: float, scale_ups: Sequence[tuple[float, int]], current: int, ready: int,
              cold_start_s: float) -> int:
    recent = sum(count for at, count in scale_ups if now - at < cold_start_s)
    return max(0, min(recent, current - ready))


def _hold(now: float, current: int, state: ScalerState, config: PolicyConfig, why: str) -> Decision:
    replicas = _clamp(current, config)
    verb = "hold" if replicas == current else f"clamp {current}→{replicas} to [min, max];"
    return Decision(replicas, f"{verb} {replicas} replicas: {why} (failing static)", state, metrics_healthy=False)


def decide(
    now: float,
    observations: Sequence[Observation],
    current_replicas: int,
    state: ScalerState | None,
    config: PolicyConfig,
) -> Decision:
    """Decide the replicas for the next control interval.

    ``observations`` is a window of recent reads (any order; older than one horizon is ignored);
    ``current_replicas`` is what the Deployment asks for now (ready + starting).
    """
    state = state or ScalerState()
    current = max(0, int(current_replicas))
    keep_for = max(config.scale_up_stabilization_s, config.scale_down_stabilization_s, config.cold_start_s)
    state = replace(state, scale_ups=tuple((at, n) for at, n in state.scale_ups if now - at < keep_for),
                    recommendations=tuple((at, n) for at, n in state.recommendations if now - at < keep_for))

    usable = sorted((o for o in observations if _usable(o.tokens_per_second) and o.at <= now),
                    key=lambda o: o.at)
    if not usable:
        return _hold(now, current, state, config, "no token-throughput sample")
    latest = usable[-1]
    age = now - latest.at
    if age > config.stale_after_s:
        return _hold(now, current, state, config, f"newest token-throughput sample is {age:.0f}s old")

    capacity = _measured_capacity(now, usable, config)
    if capacity is not None:
        config = replace(config, capacity_tokens_per_s=capacity)
    utilization, lowered_at = _learn_utilization(now, observations, state, config)
    per_request = _work_per_request(now, usable, config)
    demand = _estimate(now, usable, latest, config, utilization, per_request)
    history, growths, headroom = _learn_headroom(now, latest, usable, state, config, per_request)
    if headroom is not None:
        # Replicas for the demand at full capacity plus the learned growth of one horizon, instead of the fixed
        # utilization target and the trend.
        base = _demand_replicas(latest, usable, config, per_request)
        demand = replace(demand, needed_now=base + headroom, needed_ahead=base + headroom)
    needed_now = _clamp(math.ceil(demand.needed_now - 1e-9), config)
    needed = max(needed_now, _clamp(math.ceil(demand.needed_ahead - 1e-9), config))
    recommendations = state.recommendations + ((now, needed_now),)

    def window_values(seconds: float) -> list[int]:
        return [n for at, n in recommendations if now - at <= seconds]

    # Up: the forecast, unless the need of the up-stabilization window dipped. Down: never below the forecast
    # nor below the highest current need of the down-stabilization window, and only once decisions cover that
    # window (a fresh start has no evidence yet that the demand stays low).
    up_to = min([needed] + window_values(config.scale_up_stabilization_s)[:-1])
    down_window = _down_window(now, usable, headroom, config)
    since = now - state.recommendations[0][0] if state.recommendations else 0.0
    covered = since >= down_window - config.control_interval_s
    down_to = max([needed] + window_values(down_window)) if covered else current
    replicas = current
    if up_to > current:
        step = config.max_scale_up_step
        replicas = up_to if step is None else min(up_to, current + step)
    elif down_to < current:
        step = config.max_scale_down_step
        replicas = down_to if step is None else max(down_to, current - step)
    replicas = _clamp(replicas, config)

    scale_ups = state.scale_ups
    if replicas > current:
        scale_ups = scale_ups + ((now, replicas - current),)
    elif replicas < current:
        scale_ups = _cancel_newest(scale_ups, current - replicas)
    new_state = ScalerState(
        scale_ups=scale_ups,
        recommendations=recommendations,
        last_change_at=now if replicas != current else state.last_change_at,
        utilization=utilization,
        utilization_lowered_at=lowered_at,
        demand=history,
        growths=growths,
        headroom=headroom,
        capacity=capacity,
        **_count_slo(latest, state, config, per_request),
    )
    starting = _starting(now, state.scale_ups, current, latest.ready_replicas, config.cold_start_s)
    reason = _reason(current, replicas, needed, demand, starting, config)
    return Decision(replicas, reason, new_state, metrics_healthy=True)


def _down_window(now: float, usable: Sequence[Observation], headroom: float | None, config: PolicyConfig) -> float:
    """Scale-down stabilization: with learned headroom and a whole horizon of samples without a waiting request
    (the queue shows the SLO holds), one metric lag (a rate reports its window's midpoint, so a drop is confirmed
    that much later); otherwise ``scale_down_stabilization_s``."""
    if headroom is None:
        return config.scale_down_stabilization_s
    window = [o for o in usable if now - o.at <= config.horizon_s and _usable(o.queue_depth)]
    covered = bool(window) and now - window[0].at >= config.horizon_s - config.control_interval_s
    if covered and not any(o.queue_depth for o in window):
        return min(config.scale_down_stabilization_s, config.metric_lag_s)
    return config.scale_down_stabilization_s


def _learn_utilization(now: float, observations: Sequence[Observation], state: ScalerState,
                       config: PolicyConfig) -> tuple[float, float | None]:
    """The SLO feedback loop: the utilization u to use now and when the queue last lowered it."""
    floor, ceiling = config.utilization_floor, config.utilization_ceiling
    lowered_at = state.utilization_lowered_at
    if floor is None or ceiling is None:
        return config.utilization, lowered_at
    learned = config.utilization if state.utilization is None else state.utilization
    utilization = min(max(learned, floor), ceiling)
    window = [o for o in observations if _usable(o.queue_depth) and 0 <= now - o.at <= config.horizon_s]
    if not window:  # no queue metric: keep what was learned, as the replicas are kept on missing data
        return utilization, lowered_at
    queued_share = sum(1 for o in window if o.queue_depth) / len(window)
    settled = lowered_at is None or now - lowered_at >= config.horizon_s
    if queued_share > config.queued_sample_allowance:
        # A lower u asks for capacity that needs a horizon to show in the queue: lower at most once per horizon.
        return (max(floor, utilization * (1 - queued_share)), now) if settled else (utilization, lowered_at)
    seen_for = now - min(o.at for o in window)
    if queued_share == 0 and settled and seen_for >= config.horizon_s - config.control_interval_s:
        # Floor to ceiling over one horizon: u cannot change faster than the capacity it asks for arrives.
        rise = (ceiling - floor) * config.control_interval_s / config.horizon_s if config.horizon_s else ceiling
        utilization = min(ceiling, utilization + rise)
    return utilization, lowered_at


MAX_GROWTH_SAMPLES = 480  # a day of 3-minute horizons, or a week of 20-minute ones (~5 KB in status)


def _work_per_request(now: float, usable: Sequence[Observation], config: PolicyConfig) -> float | None:
    """Work one request asks for: served work ÷ finished requests over the last horizon of samples that carry
    both (rates over the same window), else the configured ``tokens_per_request``."""
    recent = [o for o in usable if now - o.at <= config.horizon_s and _usable(o.requests_per_second)]
    requests = sum(float(o.requests_per_second) for o in recent)  # type: ignore[arg-type]
    if requests > 0:
        return sum(float(o.tokens_per_second) for o in recent) / requests  # type: ignore[arg-type]
    return config.tokens_per_request


def _measured_capacity(now: float, usable: Sequence[Observation], config: PolicyConfig) -> float | None:
    """The replica capacity the gauges show, weighed against the configured estimate (`measured_capacity`)."""
    if not (config.calibrate_capacity and config.capacity_tokens_per_s):
        return None
    return measured_capacity(now, usable, estimate=config.capacity_tokens_per_s, max_num_seqs=config.max_num_seqs,
                             rate_window_s=2 * config.metric_lag_s, horizon_s=config.horizon_s)


def _queue_replicas(queue: float, config: PolicyConfig, per_request: float | None) -> float:
    """Replicas the queue asks for: ``queue_target_per_replica`` waiting requests each, or, derived, the queue's
    work ÷ what one replica serves in ``queue_drain_s``."""
    if config.queue_target_per_replica:
        return queue / config.queue_target_per_replica
    if config.queue_drain_s and config.capacity_tokens_per_s and per_request:
        return queue * per_request / (config.capacity_tokens_per_s * config.queue_drain_s)
    return 0.0


def _demand_replicas(latest: Observation, usable: Sequence[Observation], config: PolicyConfig,
                     per_request: float | None) -> float:
    """Replicas at full capacity for the demand: served tokens/s, plus the rate the queue grew at over one rate
    window (what was asked for beyond what was served: a served rate saturates at capacity), plus draining the
    queue within the queue target."""
    tokens = float(latest.tokens_per_second)  # type: ignore[arg-type]
    queue = float(latest.queue_depth) if _usable(latest.queue_depth) else 0.0
    window = 2 * config.metric_lag_s
    earlier = [o for o in usable if _usable(o.queue_depth) and latest.at - window <= o.at < latest.at]
    if earlier and per_request:
        first = earlier[0]
        growth = (queue - float(first.queue_depth)) / (latest.at - first.at)  # type: ignore[arg-type]
        tokens += max(0.0, growth) * per_request
    return (tokens / float(config.capacity_tokens_per_s)  # type: ignore[arg-type]
            + _queue_replicas(queue, config, per_request))


def _count_slo(latest: Observation, state: ScalerState, config: PolicyConfig,
               per_request: float | None) -> dict[str, int]:
    """One more SLO check: the queue's estimated wait (queued work ÷ ready capacity) against the SLO."""
    if not (_usable(latest.queue_depth) and config.capacity_tokens_per_s and per_request):
        return {"slo_checks": state.slo_checks, "slo_met": state.slo_met}
    capacity = max(latest.ready_replicas, 0) * config.capacity_tokens_per_s
    queued = float(latest.queue_depth) * per_request  # type: ignore[arg-type]
    met = queued == 0 or (capacity > 0 and queued / capacity <= config.queue_wait_slo_s)
    return {"slo_checks": state.slo_checks + 1, "slo_met": state.slo_met + met}


def _learn_headroom(now: float, latest: Observation, usable: Sequence[Observation], state: ScalerState,
                    config: PolicyConfig, per_request: float | None
                    ) -> tuple[tuple[tuple[float, float], ...], tuple[float, ...], float | None]:
    """Demand history, growth samples and the headroom (replicas) to keep: README "Headroom".

    Every demand sample older than one horizon yields a growth sample: how much demand grew (in replicas) from it
    to the first sample one horizon later (capacity asked for now serves then; the next decisions cover the
    instants between). The headroom is the ``headroom_quantile`` of those samples, capped at ``headroom_cap`` ×
    current demand (what the cost target allows); until a few samples exist it is the fixed utilization's spare.
    """
    if config.headroom_quantile is None:
        return state.demand, state.growths, None
    current = _demand_replicas(latest, usable, config, per_request)
    history = [(at, d) for at, d in state.demand if at < now] + [(now, current)]
    growths = list(state.growths)
    horizon = config.horizon_s
    while len(history) > 1 and history[0][0] <= now - horizon:
        at, value = history.pop(0)
        later = next(d for t, d in history if t >= at + horizon or t == history[-1][0])
        growths.append(max(0.0, later - value))
    growths = growths[-MAX_GROWTH_SAMPLES:]
    cap = config.headroom_cap * current
    if len(growths) < 8:
        headroom = current * (1 / config.utilization - 1)
    else:
        ordered = sorted(growths)
        headroom = ordered[min(len(ordered) - 1, math.ceil(config.headroom_quantile * len(ordered)) - 1)]
    # The queue absorbs a shortfall while its wait stays within the SLO: a shortfall lasts until capacity asked
    # for now is ready, one horizon, so SLO × demand ÷ horizon replicas of it need no spare replica.
    # Only while the SLO is being met: a queue that already breaks it has no slack to lend.
    meeting = state.slo_attainment is None or state.slo_attainment >= config.headroom_quantile
    absorbed = config.queue_wait_slo_s * current / horizon if horizon > 0 and meeting else 0.0
    return tuple(history), tuple(growths), min(max(0.0, headroom - absorbed), cap)


def _estimate(now: float, usable: Sequence[Observation], latest: Observation, config: PolicyConfig,
              utilization: float, per_request: float | None) -> _Demand:
    tokens = float(latest.tokens_per_second)  # type: ignore[arg-type]
    queue = float(latest.queue_depth) if _usable(latest.queue_depth) else 0.0
    forecast = tokens
    if config.predictive:
        recent = [o for o in usable if now - o.at <= config.horizon_s]
        slope, stderr = _trend(recent)
        # Grow only by the part of the trend that is there with the SLO's confidence: noise on a flat
        # series must not buy a cold start's worth of replicas.
        forecast = tokens + max(0.0, slope - config.safety_z * stderr) * config.horizon_s
    queue_replicas = _queue_replicas(queue, config, per_request)
    target = config.target_tokens_per_replica * utilization / config.utilization
    return _Demand(tokens, queue, forecast, tokens / target + queue_replicas, forecast / target + queue_replicas,
                   target)


def _cancel_newest(scale_ups: tuple[tuple[float, int], ...], removed: int) -> tuple[tuple[float, int], ...]:
    """A Deployment removes not-ready pods first, so a scale-down cancels the newest scale-ups first."""
    kept = list(scale_ups)
    while removed > 0 and kept:
        at, count = kept.pop()
        if count > removed:
            kept.append((at, count - removed))
        removed -= count
    return tuple(kept)


def _reason(current: int, replicas: int, needed: int, demand: _Demand, starting: int, config: PolicyConfig) -> str:
    parts = [f"{demand.tokens_per_second:,.0f} tok/s demand"]
    if demand.queue_depth:
        parts.append(f"{demand.queue_depth:,.0f} queued")
    if config.predictive and demand.forecast_tokens_per_second > demand.tokens_per_second * 1.005:
        parts.append(f"forecast {demand.forecast_tokens_per_second:,.0f} tok/s in {config.horizon_s:.0f}s")
    detail = " + ".join(parts[:2]) + (", " + parts[2] if len(parts) > 2 else "")
    detail += f", {starting} starting" if starting else ""
    target = f"needs {needed} at {demand.target_tokens_per_replica:,.0f} tok/s each"
    if replicas > current:
        return f"scale up {current}→{replicas}: {detail}; {target}"
    if replicas < current:
        return f"scale down {current}→{replicas}: {detail}; {target}"
    return f"hold {current}: {detail}; {target}"
