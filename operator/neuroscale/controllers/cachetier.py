"""Reconcile one CacheTier: run its Redis (or validate the external endpoint), report status and Events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from neuroscale import reasons as R
from neuroscale.api.cachetier import CacheTierSpec
from neuroscale.api.schema import describe
from neuroscale.conditions import ConditionUpdate
from neuroscale.controllers.children import (
    EmitEvent, Outcome, apply_children, delete_children, report_status,
)
from neuroscale.controllers.inferencecascade import is_problem
from neuroscale.k8s.client import KubeClient
from neuroscale.render.cachetier import redis_name, render_cache_tier
from neuroscale.status.cachetier import CacheObserved, cache_tier_status

KIND = "CacheTier"
CHILD_KINDS = (("apps/v1", "Deployment"), ("v1", "Service"), ("networking.k8s.io/v1", "NetworkPolicy"))


def owned_children(name: str) -> list[tuple[str, str, str]]:
    """The Redis an inCluster CacheTier runs is named `<name>-redis`."""
    return [(api_version, kind, redis_name(name)) for api_version, kind in CHILD_KINDS]


def reconcile(body: dict[str, Any], kube: KubeClient, *, now: datetime, emit: EmitEvent) -> Outcome:
    """Bring one CacheTier's Redis in line with its spec; an external backend has no children (old ones go)."""
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    try:
        spec = CacheTierSpec.model_validate(body.get("spec") or {})
        rendered = render_cache_tier(name, namespace, spec)
    except ValidationError as exc:
        problem = ConditionUpdate(R.RESOLVED, "False", R.INVALID_SPEC, describe(exc))
        return _report(body, kube, CacheObserved(spec_problem=problem), now, emit, {})
    except ValueError as exc:
        problem = ConditionUpdate(R.RESOLVED, "False", R.INVALID_SPEC, str(exc))
        return _report(body, kube, CacheObserved(spec_problem=problem), now, emit, {})

    applied, apply_error = apply_children(body, rendered.objects, kube, emit)
    if rendered.backend == "external":
        # Switched from inCluster to external: the Redis the operator ran is no longer used.
        delete_children(body, owned_children(name), kube)
        live = None
    else:
        live = kube.get("apps/v1", "Deployment", namespace, redis_name(name))
    observed = CacheObserved(backend=rendered.backend, endpoint=rendered.endpoint, mode=spec.mode, deployment=live,
                             apply_error=apply_error)
    return _report(body, kube, observed, now, emit, applied)


def _report(body: dict[str, Any], kube: KubeClient, observed: CacheObserved, now: datetime, emit: EmitEvent,
            applied: dict[str, str]) -> Outcome:
    generation = body["metadata"].get("generation")
    written = report_status(body, lambda current: cache_tier_status(current, observed, generation=generation, now=now), kube,
                            emit, is_problem=is_problem)
    return Outcome(applied=applied, status_written=written, error=observed.apply_error)
