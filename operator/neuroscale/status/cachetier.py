"""A CacheTier's status from what the reconcile saw: endpoint, readiness of the Redis, conditions (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from neuroscale import reasons as R
from neuroscale.conditions import ConditionUpdate, merge_conditions
from neuroscale.status import spec_problem_status

BACKEND_VALID = "BackendValid"
EXTERNAL_ENDPOINT = "ExternalEndpoint"


@dataclass(frozen=True)
class CacheObserved:
    """What one reconcile learned about a CacheTier."""

    backend: str | None = None  # "inCluster" or "external"
    endpoint: str | None = None
    mode: str | None = None
    deployment: dict[str, Any] | None = None  # the Redis Deployment (inCluster only)
    spec_problem: ConditionUpdate | None = None
    apply_error: str | None = None


def _ready(observed: CacheObserved) -> ConditionUpdate:
    if observed.apply_error:
        return ConditionUpdate(R.READY, "False", R.APPLY_FAILED, observed.apply_error)
    if observed.backend == "external":
        # The operator checks the endpoint's form, not its reachability: it may sit behind rules only gateways pass.
        return ConditionUpdate(R.READY, "True", EXTERNAL_ENDPOINT,
                               f"external endpoint {observed.endpoint} (validated, not probed by the operator)")
    ready = (((observed.deployment or {}).get("status") or {}).get("readyReplicas") or 0)
    if ready == 0:
        return ConditionUpdate(R.READY, "False", R.WAITING_FOR_PODS, "Redis is not ready yet")
    return ConditionUpdate(R.READY, "True", R.AVAILABLE, f"Redis ready at {observed.endpoint}")


def cache_tier_status(
    current: dict[str, Any] | None, observed: CacheObserved, *, generation: int | None, now: datetime
) -> dict[str, Any]:
    """The full status the resource should carry; equal to `current` when nothing changed (so no write)."""
    current = current or {}
    gen = {"observedGeneration": generation} if generation is not None else {}
    if observed.spec_problem is not None:
        return spec_problem_status(current, observed.spec_problem, generation=generation, now=now)
    updates = [
        ConditionUpdate(R.RESOLVED, "True", BACKEND_VALID, f"{observed.mode} cache, {observed.backend} Redis"),
        ConditionUpdate(R.DEGRADED, "True", R.APPLY_FAILED, observed.apply_error) if observed.apply_error
        else ConditionUpdate(R.DEGRADED, "False", R.HEALTHY, ""),
        _ready(observed),
    ]
    status = {
        "conditions": merge_conditions(current.get("conditions"), updates, generation=generation, now=now),
        "endpoint": observed.endpoint,
        "mode": observed.mode,
        "backend": observed.backend,
        **gen,
    }
    return {k: v for k, v in status.items() if v is not None}
