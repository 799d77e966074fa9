"""One autoscaling step for a ModelDeployment: read metrics, ask the pure policy, scale, report."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from neuroscale import reasons as R
from neuroscale.api.modeldeployment import DEFAULT_COLD_START_SECONDS, AutoscalingSpec, ModelDeploymentSpec
from neuroscale.autoscale.capacity import ReplicaModel, replica_model_from_sizing
from neuroscale.autoscale.metrics import MetricsReading, MetricsSource, PrometheusSettings, same_endpoint
from neuroscale.autoscale.policy import Decision, Observation, PolicyConfig, ScalerState, decide, default_config
from neuroscale.autoscale.promql import MetricsTarget, window_seconds
from neuroscale.autoscale.slo import DEFAULT_QUEUE_WAIT_S, QueueBudget, queue_wait_budget
from neuroscale.autoscale.zero import ZeroConfig, ZeroDecision, ZeroInputs, decide_zero
from neuroscale.conditions import ConditionUpdate, find, merge_conditions, rfc3339
from neuroscale.controllers.children import write_status
from neuroscale.k8s.client import KubeClient
from neuroscale.observability import METRICS_HEALTHY, SCALING_DECISIONS
from neuroscale.render.modeldeployment import sizing_request
from neuroscale.sizing import SizingError, size

log = logging.getLogger(__name__)
AUTOSCALER_FIELD_MANAGER = "neuroscale-autoscaler"
EmitEvent = Callable[[str, str, str], None]


@dataclass
class Memory:
    """What the loop keeps in process for one ModelDeployment: recent observations and the policy state."""

    observations: deque[Observation] = field(default_factory=lambda: deque(maxlen=512))
    state: ScalerState | None = None
    # Since when a minReplicas-0 deployment has been idle; in process only: a restart restarts the idle clock,
    # which can only delay a scale to zero.
    idle_since: float | None = None


@dataclass(frozen=True)
class StepOutcome:
    replicas: int
    changed: bool
    reason: str
    metrics_healthy: bool


def cold_start_seconds(scaling: AutoscalingSpec, status: dict[str, Any]) -> float:
    """The spec's cold start, else the measured one (status.coldStart, per artifact key), else the default."""
    if scaling.cold_start_seconds is not None:
        return float(scaling.cold_start_seconds)
    measured = (status.get("coldStart") or {}).get("seconds")
    return float(measured) if measured is not None else DEFAULT_COLD_START_SECONDS


def replica_model(spec: ModelDeploymentSpec, status: dict[str, Any]) -> ReplicaModel:
    """One replica's decode and prefill rates from one sizing of the spec (`capacity.replica_model_from_sizing`)."""
    seqs = spec.batching.max_num_seqs
    try:
        return replica_model_from_sizing(size(sizing_request(spec)), seqs)
    except SizingError:
        recorded = (status.get("sizing") or {}).get("estimatedTokensPerSecond")
        if not recorded:
            raise
        # The reconcile reports a spec that sizes nowhere; the replicas it sized before keep running, so keep
        # scaling them on what it recorded: generated tokens/s at the sized mix, prefill included, so prompts
        # count as free.
        return ReplicaModel(float(recorded), max_num_seqs=seqs)


def queue_budget(spec: ModelDeploymentSpec, replica: ReplicaModel) -> QueueBudget:
    """The queue wait the spec's SLO allows (see `slo.queue_wait_budget`); the mean prompt is the one sizing assumes."""
    slo = spec.autoscaling.slo if spec.autoscaling else None
    if slo is None:
        return QueueBudget(DEFAULT_QUEUE_WAIT_S)
    mean_prompt, _ = sizing_request(spec).workload()
    return queue_wait_budget(slo.queue_wait_seconds, slo.time_to_first_token_seconds, mean_prompt,
                             replica.prefill_tokens_per_s)


def policy_config(scaling: AutoscalingSpec, capacity_tokens_per_s: float, interval_s: float,
                  cold_start_s: float = DEFAULT_COLD_START_SECONDS,
                  queue_wait_slo_s: float = DEFAULT_QUEUE_WAIT_S, max_num_seqs: int | None = None) -> PolicyConfig:
    """Derived defaults (see `default_config`) with every field the user set taking precedence."""
    # The throughput policy never goes below one replica: the 0↔1 transitions are autoscale/zero.py's.
    config = default_config(
        capacity_tokens_per_s, cold_start_s, min_replicas=max(1, scaling.min_replicas),
        max_replicas=scaling.max_replicas, predictive=scaling.predictive, control_interval_s=interval_s,
        queue_wait_slo_s=queue_wait_slo_s, max_num_seqs=max_num_seqs,
    )
    overrides: dict[str, Any] = {}
    if scaling.target_tokens_per_second is not None:
        # A load per replica the user chose replaces the learned headroom (which sizes from capacity instead).
        overrides["target_tokens_per_replica"] = scaling.target_tokens_per_second
        overrides["headroom_quantile"] = None
    if scaling.queue_depth_target is not None:
        overrides["queue_target_per_replica"] = scaling.queue_depth_target
    if scaling.scale_up_stabilization_seconds is not None:
        overrides["scale_up_stabilization_s"] = float(scaling.scale_up_stabilization_seconds)
    if scaling.scale_down_stabilization_seconds is not None:
        overrides["scale_down_stabilization_s"] = float(scaling.scale_down_stabilization_seconds)
    if scaling.max_scale_up_step is not None:
        overrides["max_scale_up_step"] = scaling.max_scale_up_step
    if scaling.max_scale_down_step is not None:
        overrides["max_scale_down_step"] = scaling.max_scale_down_step
    return replace(config, **overrides)


def prometheus_settings(scaling: AutoscalingSpec, defaults: PrometheusSettings | None) -> PrometheusSettings | None:
    """Where this ModelDeployment's metrics are read; None when no URL is configured at all.

    The operator's credentials (bearer token file, SigV4) go only to the URL they were configured for. Anyone who
    may write a ModelDeployment chooses spec.autoscaling.metrics.prometheusUrl, so a URL other than the
    operator's own is queried without them (the CA bundle, timeouts and rate window still apply).
    """
    url = scaling.metrics.prometheus_url
    if url is None:
        return defaults
    if defaults is None:
        return PrometheusSettings(url=url)
    if same_endpoint(url, defaults.url):
        return defaults
    return replace(defaults, url=url, bearer_token_file=None, sigv4_region=None)


def step(
    body: dict[str, Any], kube: KubeClient, source: MetricsSource | None, memory: Memory, *,
    now: float, clock: datetime, interval_s: float, emit: EmitEvent,
) -> StepOutcome | None:
    """Run one control interval. Returns None when autoscaling is off or the Deployment does not exist yet."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    spec = ModelDeploymentSpec.model_validate(body["spec"])
    scaling = spec.autoscaling
    if scaling is None or not scaling.enabled:
        return None
    deployment = kube.get("apps/v1", "Deployment", namespace, name)
    if deployment is None:
        return None  # the reconcile creates it; nothing to scale yet
    status = body.get("status") or {}
    current = int((deployment.get("spec") or {}).get("replicas", scaling.min_replicas))
    ready = int((deployment.get("status") or {}).get("readyReplicas", 0))

    if memory.state is None:  # after an operator restart, pick up what the last process remembered
        memory.state = ScalerState.from_dict((status.get("autoscaling") or {}).get("state"))
    replica = replica_model(spec, status)
    budget = queue_budget(spec, replica)
    cold_start = cold_start_seconds(scaling, status)
    config = policy_config(scaling, replica.decode_tokens_per_s, interval_s, cold_start, budget.seconds,
                           replica.max_num_seqs)

    if source is None:
        reading = MetricsReading(now, None, None, 0, error="no Prometheus URL configured (operator flag "
                                 "--prometheus-url or spec.autoscaling.metrics.prometheusUrl)")
    else:
        target = MetricsTarget.for_deployment(namespace, name, spec.engine.name, min_reporting_pods=max(1, ready))
        reading = source.read(target, now)
    work = served_work(reading, replica)
    memory.observations.append(Observation(
        reading.at, work, reading.queue_depth, ready, running=reading.running,
        kv_cache_usage=reading.kv_cache_usage, requests_per_second=reading.requests_per_second,
    ))
    zero, demand_error = _zero_decision(namespace, name, scaling, reading, current, source, memory, now, cold_start)
    if zero is not None and zero.replicas is not None:
        decision = Decision(zero.replicas, zero.reason, memory.state, zero.metrics_healthy)
    else:
        decision = decide(now, list(memory.observations), current, memory.state, config)
        if zero is not None and zero.note:
            decision = replace(decision, reason=f"{decision.reason}; {zero.note}")
    memory.state = decision.state
    METRICS_HEALTHY.labels(namespace, name).set(1 if decision.metrics_healthy else 0)

    changed = decision.replicas != current
    auto = dict(status.get("autoscaling") or {})
    if changed:
        # Through the scale subresource, under its own field manager: the reconciler applies the same number next
        # (it renders the autoscaler's desiredReplicas), and `kubectl get deploy --show-managed-fields` shows who.
        kube.patch("apps/v1", "Deployment", namespace, name, {"spec": {"replicas": decision.replicas}},
                   subresource="scale", field_manager=AUTOSCALER_FIELD_MANAGER)
        direction = "up" if decision.replicas > current else "down"
        SCALING_DECISIONS.labels(direction).inc()
        emit("Normal", "ScaledUp" if direction == "up" else "ScaledDown", decision.reason)
        auto["lastScaleTime"] = rfc3339(clock)
    learned = decision.state.to_dict()
    if changed or learned.get("utilization") != (auto.get("state") or {}).get("utilization"):
        # Persisted when replicas or the learned utilization change, not every tick: enough to survive a restart.
        auto["state"] = learned
    auto.update({
        "observedTokensPerSecond": _rounded(reading.tokens_per_second),
        "observedPromptTokensPerSecond": _rounded(reading.prompt_tokens_per_second),
        "observedWorkTokensPerSecond": _rounded(work),
        "queueDepth": _rounded(reading.queue_depth),
        "runningRequests": _rounded(reading.running),
        "kvCacheUsagePercent": None if reading.kv_cache_usage is None else _rounded(100 * reading.kv_cache_usage),
        "desiredReplicas": decision.replicas,
        "lastDecision": decision.reason,
        "headroomReplicas": None if decision.state.headroom is None else round(decision.state.headroom, 2),
        "sloAttainmentPercent": (None if decision.state.slo_attainment is None
                                 else round(100 * decision.state.slo_attainment, 2)),
        "measuredCapacityTokensPerSecond": _rounded(decision.state.capacity),
    })
    # A failed read is reported at once, even while the policy still acts on the last good samples. At zero no
    # engine reports: only the gateways' demand counts.
    if current == 0 and zero is not None:
        reading = replace(reading, error=demand_error)
    # An SLO that prefill alone breaks is the spec's problem, not the metrics': said in either message.
    slo_note = f"; {budget.problem}" if budget.problem else ""
    if decision.metrics_healthy and reading.error is None:
        condition = ConditionUpdate(R.AUTOSCALING, "True", R.SCALING_ACTIVE, decision.reason + slo_note)
    else:
        problem = reading.error or decision.reason
        condition = ConditionUpdate(R.AUTOSCALING, "False", R.METRICS_UNAVAILABLE,
                                    f"holding {decision.replicas} replicas: {problem}{slo_note}")

    def build(current: dict[str, Any]) -> dict[str, Any]:
        # Only the autoscaler's own parts; the reconciler's conditions and figures are kept as they now stand.
        conditions = merge_conditions(current.get("conditions"), [condition], generation=meta.get("generation"),
                                      now=clock)
        return {**current, "autoscaling": {k: v for k, v in auto.items() if v is not None},
                "conditions": conditions, "desiredReplicas": decision.replicas}

    written = write_status(body, build, kube)
    if written is not None:
        previous = find(written[0].get("conditions"), R.AUTOSCALING)
        if previous is not None and previous["status"] != condition.status:
            emit("Warning" if condition.status == "False" else "Normal", condition.reason, condition.message)
    return StepOutcome(decision.replicas, changed, decision.reason, decision.metrics_healthy)


def _zero_decision(
    namespace: str, name: str, scaling: AutoscalingSpec, reading: MetricsReading, current: int,
    source: MetricsSource | None, memory: Memory, now: float, cold_start_s: float,
) -> tuple[ZeroDecision | None, str | None]:
    """The 0↔1 decision of a minReplicas-0 deployment (None for the others) and why demand is unknown, if it is."""
    if scaling.min_replicas > 0:
        return None, None
    if source is None:
        demand, error = None, "no Prometheus URL configured to read cascade gateway demand from"
        window_s = window_seconds(PrometheusSettings.rate_window)
    else:
        demand, error = source.read_gateway_demand(namespace, name, now)
        window_s = window_seconds(source.settings.rate_window)
    seen = ZeroInputs(current, reading.tokens_per_second, reading.queue_depth, demand)
    zero = decide_zero(now, seen, memory.idle_since, ZeroConfig.derived(cold_start_s, window_s))
    memory.idle_since = zero.idle_since
    return zero, error


def served_work(reading: MetricsReading, replica: ReplicaModel) -> float | None:
    """Generated tokens/s plus prompt tokens/s at their prefill cost (generated alone where prompts are not
    reported); None without a generated-token rate."""
    if reading.tokens_per_second is None:
        return None
    return replica.work(reading.tokens_per_second, reading.prompt_tokens_per_second or 0.0)


def _rounded(value: float | None) -> float | None:
    """Whole tokens and requests: finer digits would only turn every tick into a status write."""
    return None if value is None else float(round(value))
