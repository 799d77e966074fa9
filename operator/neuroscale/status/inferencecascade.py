"""An InferenceCascade's status from what the reconcile saw: tiers, cache, gateway rollout, conditions (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from neuroscale import reasons as R
from neuroscale.conditions import ConditionUpdate, merge_conditions
from neuroscale.status import spec_problem_status

TIERS_READY = "TiersReady"
CACHE_READY = "CacheReady"
ALL_TIERS_READY = "AllTiersReady"
TIERS_NOT_READY = "TiersNotReady"
CACHE_TIER_NOT_FOUND = "CacheTierNotFound"
CACHE_TIER_INVALID = "CacheTierInvalid"
CACHE_TIER_NOT_READY = "CacheTierNotReady"
CACHE_TIER_READY = "CacheTierReady"
TIERS_RESOLVED = "TiersResolved"
TIER_LOOPS_BACK = "TierLoopsBack"


@dataclass(frozen=True)
class CascadeObserved:
    """What one reconcile learned: the gateway Deployment, the resolved tiers, the cache, and any problem."""

    deployment: dict[str, Any] | None = None
    desired_replicas: int = 0
    tiers: list[dict[str, Any]] = field(default_factory=list)
    endpoint: str | None = None
    model_name: str | None = None
    config_hash: str | None = None
    cache_endpoint: str | None = None
    auth_mode: str | None = None
    cache: ConditionUpdate | None = None  # CacheReady, when a cacheTierRef is set
    spec_problem: ConditionUpdate | None = None  # Resolved=False: the spec or the gateway config cannot work
    apply_error: str | None = None


def _service_of(url: str | None) -> tuple[str, str] | None:
    """(Service, namespace) of a `http://<service>.<namespace>.svc...` URL, as the gateway's endpoint is built."""
    host = (urlsplit(url).hostname or "") if url else ""
    labels = host.rstrip(".").split(".")
    return (labels[0], labels[1]) if len(labels) >= 3 and labels[2] == "svc" else None


def _reaches(url: str, service: str, namespace: str) -> bool:
    """Whether `url` reaches Service `service` of `namespace` from a pod in that namespace: by its short name,
    `<service>.<namespace>`, or `<service>.<namespace>.svc[.<cluster domain>]` (whatever the port: one Service)."""
    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
    except ValueError:
        return False
    labels = host.split(".")
    return labels[0] == service and (len(labels) == 1 or (
        labels[1] == namespace and (len(labels) == 2 or labels[2] == "svc")))


def looping_tiers(tiers: list[dict[str, Any]], gateway_endpoint: str | None) -> tuple[str, list[str]]:
    """(the gateway's Service, names of the tiers pointing at it). Such a tier sends each request back into the
    gateway serving it, so it can never answer."""
    own = _service_of(gateway_endpoint)
    if own is None:
        return "", []
    return own[0], [t["name"] for t in tiers if _reaches(t.get("endpoint") or "", *own)]


def flag_loops(tiers: list[dict[str, Any]], gateway_endpoint: str | None) -> list[dict[str, Any]]:
    """The tiers as status reports them: one that points at the cascade's own gateway is not ready, saying why."""
    service, loops = looping_tiers(tiers, gateway_endpoint)
    message = f"points at this cascade's own gateway Service {service}: requests would loop back into the gateway"
    return [{**t, "ready": "False", "message": message} if t["name"] in loops else t for t in tiers]


def tiers_condition(tiers: list[dict[str, Any]], gateway_endpoint: str | None = None) -> ConditionUpdate:
    """False naming every tier whose readiness is known to be False; external tiers (Unknown) do not block.

    A tier pointing at the cascade's own gateway (`gateway_endpoint`) makes it False with its own reason.
    """
    service, loops = looping_tiers(tiers, gateway_endpoint)
    if loops:
        one = len(loops) == 1
        return ConditionUpdate(TIERS_READY, "False", TIER_LOOPS_BACK, (
            f"{', '.join(loops)} {'points' if one else 'point'} at this cascade's own gateway Service {service}: "
            f"requests would loop back into the gateway; point {'it' if one else 'them'} at a model instead"))
    waiting = [f"{t['name']} ({t['message']})" if t.get("message") else t["name"]
               for t in tiers if t["ready"] == "False"]
    if waiting:
        return ConditionUpdate(TIERS_READY, "False", TIERS_NOT_READY, "not ready: " + "; ".join(waiting))
    unprobed = [t["name"] for t in tiers if t["ready"] == "Unknown"]
    note = f"; external tiers not probed: {', '.join(unprobed)}" if unprobed else ""
    return ConditionUpdate(TIERS_READY, "True", ALL_TIERS_READY, f"every ModelDeployment tier is ready{note}")


def _gateway_ready(observed: CascadeObserved, tiers: ConditionUpdate) -> ConditionUpdate:
    if observed.apply_error:
        return ConditionUpdate(R.READY, "False", R.APPLY_FAILED, observed.apply_error)
    status = (observed.deployment or {}).get("status") or {}
    available = status.get("availableReplicas", status.get("readyReplicas", 0)) or 0
    if observed.desired_replicas == 0:
        return ConditionUpdate(R.READY, "False", R.SCALED_TO_ZERO, "gateway replicas is 0")
    if available == 0:
        return ConditionUpdate(R.READY, "False", R.WAITING_FOR_PODS, "no gateway replica is available yet")
    message = f"{available} of {observed.desired_replicas} gateway replicas available"
    if tiers.status != "True":
        message += f"; {tiers.message}"
    return ConditionUpdate(R.READY, "True", R.AVAILABLE, message)


def cascade_status(
    current: dict[str, Any] | None, observed: CascadeObserved, *, generation: int | None, now: datetime
) -> dict[str, Any]:
    """The full status the resource should carry; equal to `current` when nothing changed (so no write).

    Ready means the gateway serves: it requires the gateway Deployment available, not every tier, since the
    cascade escalates past a tier that fails. TiersReady says which tiers are not ready, and Ready repeats it.
    """
    current = current or {}
    gen = {"observedGeneration": generation} if generation is not None else {}
    if observed.spec_problem is not None:
        return spec_problem_status(current, observed.spec_problem, generation=generation, now=now)

    tiers = tiers_condition(observed.tiers, observed.endpoint)
    updates = [ConditionUpdate(R.RESOLVED, "True", TIERS_RESOLVED, f"{len(observed.tiers)} tiers resolved"), tiers]
    if observed.apply_error:
        updates.append(ConditionUpdate(R.DEGRADED, "True", R.APPLY_FAILED, observed.apply_error))
    else:
        updates.append(ConditionUpdate(R.DEGRADED, "False", R.HEALTHY, ""))
    if observed.cache is not None:
        updates.append(observed.cache)
    updates.append(_gateway_ready(observed, tiers))
    conditions = merge_conditions(current.get("conditions"), updates, generation=generation, now=now)
    if observed.cache is None:
        conditions = [c for c in conditions if c["type"] != CACHE_READY]
    dep_status = (observed.deployment or {}).get("status") or {}
    status: dict[str, Any] = {
        "conditions": conditions,
        "tiers": flag_loops(observed.tiers, observed.endpoint),
        "endpoint": observed.endpoint,
        "modelName": observed.model_name,
        "replicas": dep_status.get("replicas", 0),
        "readyReplicas": dep_status.get("readyReplicas", 0),
        "configHash": observed.config_hash,
        "cacheEndpoint": observed.cache_endpoint,
        "authMode": observed.auth_mode,
        "usage": current.get("usage"),  # written by the usage summary (controllers/cascade_usage.py), kept here
        **gen,
    }
    return {k: v for k, v in status.items() if v is not None}
