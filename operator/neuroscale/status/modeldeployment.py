"""A ModelDeployment's status from what the reconcile saw: conditions, replicas, sizing, cost (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from neuroscale import reasons as R
from neuroscale.conditions import ConditionUpdate, derive_ready, merge_conditions
from neuroscale.status import spec_problem_status


@dataclass(frozen=True)
class Observed:
    """What one reconcile learned from the cluster and the pure core."""

    desired_replicas: int
    deployment: dict[str, Any] | None
    sizing: dict[str, Any] | None = None
    price_per_hour: float | None = None
    cost_per_million_tokens: float | None = None
    selector: str | None = None
    endpoint: str | None = None
    served_model_name: str | None = None
    adapters: list[dict[str, Any]] | None = None  # LoRA adapters served: name, source, rank
    spec_problem: ConditionUpdate | None = None  # Sized=False: invalid spec or no fit
    apply_error: str | None = None
    scales_to_zero: bool = False  # autoscaling with minReplicas 0
    # status.compileCache and its condition (None: the spec has no compile cache), status.coldStart.
    compile_cache: dict[str, Any] | None = None
    compile_cache_condition: ConditionUpdate | None = None
    cold_start: dict[str, Any] | None = None


def rollout_conditions(observed: Observed, generation: int | None) -> list[ConditionUpdate]:
    """Progressing and Degraded from the Deployment's own status, the way `kubectl rollout status` reads it."""
    deployment = observed.deployment
    if observed.apply_error:
        degraded = ConditionUpdate(R.DEGRADED, "True", R.APPLY_FAILED, observed.apply_error)
    else:
        degraded = ConditionUpdate(R.DEGRADED, "False", R.HEALTHY, "")
    if deployment is None:
        return [ConditionUpdate(R.PROGRESSING, "True", R.ROLLING_OUT, "Creating the Deployment"), degraded]

    status = deployment.get("status") or {}
    want = observed.desired_replicas
    updated = status.get("updatedReplicas", 0)
    ready = status.get("readyReplicas", 0)
    total = status.get("replicas", 0)
    dep_generation = (deployment.get("metadata") or {}).get("generation")
    seen = status.get("observedGeneration")
    stale = dep_generation is not None and (seen is None or seen < dep_generation)

    for cond in status.get("conditions") or ():
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            degraded = ConditionUpdate(R.DEGRADED, "True", R.ROLLOUT_STALLED, cond.get("message", ""))
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            degraded = ConditionUpdate(R.DEGRADED, "True", R.REPLICAS_UNAVAILABLE, cond.get("message", ""))

    if stale or updated < want or total > want:
        progressing = ConditionUpdate(
            R.PROGRESSING, "True", R.ROLLING_OUT, f"{updated} of {want} replicas updated, {ready} ready"
        )
    elif ready < want:
        progressing = ConditionUpdate(
            R.PROGRESSING, "True", R.WAITING_FOR_PODS,
            f"{ready} of {want} replicas ready (Neuron replicas load the model for minutes)",
        )
    else:
        progressing = ConditionUpdate(R.PROGRESSING, "False", R.RECONCILED, f"{ready} of {want} replicas ready")
    return [progressing, degraded]


SCALED_TO_ZERO_WHILE_IDLE = (
    "scaled to zero while idle (minReplicas 0, meant for a deployment behind an InferenceCascade): the cascade's "
    "gateway wakes it on demand and serves from its next tier until a replica is ready"
)


def ready_condition(observed: Observed, updates: list[ConditionUpdate]) -> ConditionUpdate:
    by_type = {u.type: u for u in updates}
    if by_type[R.SIZED].status != "True":
        return derive_ready(updates, positive=(R.SIZED,))
    if by_type[R.DEGRADED].status == "True":
        return derive_ready(updates, positive=(R.SIZED,), negative=(R.DEGRADED,))
    ready = ((observed.deployment or {}).get("status") or {}).get("readyReplicas", 0)
    if observed.desired_replicas == 0:
        if observed.scales_to_zero:
            return ConditionUpdate(R.READY, "False", R.SCALED_TO_ZERO, SCALED_TO_ZERO_WHILE_IDLE)
        return ConditionUpdate(R.READY, "False", R.SCALED_TO_ZERO, "replicas is 0")
    if ready == 0:
        return ConditionUpdate(R.READY, "False", R.WAITING_FOR_PODS, "no replica is ready yet")
    return ConditionUpdate(R.READY, "True", R.AVAILABLE, f"{ready} of {observed.desired_replicas} replicas ready")


def model_deployment_status(
    current: dict[str, Any] | None, observed: Observed, *, generation: int | None, now: datetime
) -> dict[str, Any]:
    """The full status the resource should carry; equal to `current` when nothing changed (so no write)."""
    current = current or {}
    updates: list[ConditionUpdate]
    if observed.spec_problem is not None:
        return spec_problem_status(current, observed.spec_problem, generation=generation, now=now)

    sized = ConditionUpdate(
        R.SIZED, "True", R.SIZING_CHOSEN, (observed.sizing or {}).get("explanation", "")
    )
    updates = [sized, *rollout_conditions(observed, generation)]
    updates.append(ready_condition(observed, updates))
    if observed.compile_cache_condition is not None:
        updates.append(observed.compile_cache_condition)
    conditions = merge_conditions(current.get("conditions"), updates, generation=generation, now=now)
    if observed.compile_cache_condition is None:  # the spec no longer has a compile cache
        conditions = [c for c in conditions if c["type"] != R.COMPILE_CACHE]
    dep_status = (observed.deployment or {}).get("status") or {}
    running = dep_status.get("replicas", 0)
    status: dict[str, Any] = {
        **current,
        "conditions": conditions,
        "replicas": running,
        "readyReplicas": dep_status.get("readyReplicas", 0),
        "desiredReplicas": observed.desired_replicas,
        "selector": observed.selector,
        "sizing": observed.sizing,
        "endpoint": observed.endpoint,
        "servedModelName": observed.served_model_name,
        "adapters": observed.adapters or None,
        "compileCache": observed.compile_cache,
        "coldStart": observed.cold_start or current.get("coldStart"),
    }
    if observed.price_per_hour is not None:
        status["costPerHour"] = round(observed.price_per_hour * running, 4)
    if observed.cost_per_million_tokens is not None:
        status["costPerMillionTokens"] = round(observed.cost_per_million_tokens, 4)
    if generation is not None:
        status["observedGeneration"] = generation
    return {k: v for k, v in status.items() if v is not None}
