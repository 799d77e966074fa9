"""Reconcile one InferenceCascade: resolve tiers and cache, render the gateway, apply the difference, report."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from neuroscale import reasons as R
from neuroscale.api.cachetier import CacheTierSpec
from neuroscale.api.common import API_VERSION
from neuroscale.api.inferencecascade import InferenceCascadeSpec
from neuroscale.api.schema import describe
from neuroscale.conditions import ConditionUpdate, find
from neuroscale.controllers.children import (
    EmitEvent, Outcome, apply_children, delete_children, report_status,
)
from neuroscale.k8s.client import KubeClient
from neuroscale.render.cachetier import CacheBinding, cache_binding
from neuroscale.render.inferencecascade import gateway_name, render_inference_cascade, resolve_tiers
from neuroscale.status import inferencecascade as S

KIND = "InferenceCascade"
CHILD_KINDS = (("v1", "ConfigMap"), ("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "ServiceAccount"),
               ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
               ("policy/v1", "PodDisruptionBudget"))
# Rendered only for some specs (an IAM role, replica routing, two or more replicas): deleted when a spec no longer
# needs them.
OPTIONAL_KINDS = (("v1", "ServiceAccount"), ("rbac.authorization.k8s.io/v1", "RoleBinding"),
                  ("rbac.authorization.k8s.io/v1", "Role"), ("policy/v1", "PodDisruptionBudget"))

def owned_children(name: str) -> list[tuple[str, str, str]]:
    return [(api_version, kind, gateway_name(name)) for api_version, kind in CHILD_KINDS]


def _cache(spec: InferenceCascadeSpec, name: str, namespace: str,
           kube: KubeClient) -> tuple[CacheBinding | None, ConditionUpdate | None]:
    """The cache the gateway uses and the CacheReady condition.

    A missing or invalid CacheTier does not hold the gateway back: it serves uncached (correct, only slower) and
    CacheReady says why; when the CacheTier appears, its event re-reconciles this cascade and the pods roll.
    """
    ref = spec.cache_tier_ref
    if ref is None:
        return None, None
    body = kube.get(API_VERSION, "CacheTier", namespace, ref.name)
    if body is None:
        return None, ConditionUpdate(S.CACHE_READY, "False", S.CACHE_TIER_NOT_FOUND,
                                     f"CacheTier {ref.name} not found; serving without a cache until it exists")
    try:
        cache_spec = CacheTierSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        return None, ConditionUpdate(S.CACHE_READY, "False", S.CACHE_TIER_INVALID,
                                     f"CacheTier {ref.name} is invalid ({describe(exc)}); serving without a cache")
    binding = cache_binding(ref.name, namespace, cache_spec, key_prefix=name)
    ready = find((body.get("status") or {}).get("conditions"), R.READY)
    if ready is None or ready.get("status") != "True":
        detail = (ready or {}).get("message") or "it has not reported readiness yet"
        return binding, ConditionUpdate(S.CACHE_READY, "False", S.CACHE_TIER_NOT_READY,
                                        f"CacheTier {ref.name} is not ready: {detail}; lookups miss until it is")
    return binding, ConditionUpdate(S.CACHE_READY, "True", S.CACHE_TIER_READY,
                                    f"{cache_spec.mode} cache at {binding.settings['redis_url']}")


def reconcile(body: dict[str, Any], kube: KubeClient, *, now: datetime, emit: EmitEvent, image: str) -> Outcome:
    """Bring one InferenceCascade's gateway in line with its spec, tiers and cache, and report what is true.

    A spec that cannot work (e.g. a tier named like the cascade's model) becomes `Resolved=False` and the running
    gateway is left untouched.
    """
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    try:
        spec = InferenceCascadeSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        return _report(body, kube, S.CascadeObserved(
            spec_problem=ConditionUpdate(R.RESOLVED, "False", R.INVALID_SPEC, describe(exc))), now, emit, {})
    references = {t.model_deployment.name for t in spec.tiers if t.model_deployment is not None}
    model_deployments = {ref: kube.get(API_VERSION, "ModelDeployment", namespace, ref) for ref in sorted(references)}
    tiers = resolve_tiers(spec, namespace, model_deployments)
    binding, cache_condition = _cache(spec, name, namespace, kube)
    try:
        rendered = render_inference_cascade(name, namespace, spec, tiers, binding, image=image)
    except ValueError as exc:
        return _report(body, kube, S.CascadeObserved(
            spec_problem=ConditionUpdate(R.RESOLVED, "False", R.INVALID_SPEC, str(exc))), now, emit, {})

    applied, apply_error = apply_children(body, rendered.objects, kube, emit)
    rendered_kinds = {o["kind"] for o in rendered.objects}
    delete_children(body, [(api_version, kind, gateway_name(name)) for api_version, kind in OPTIONAL_KINDS
                           if kind not in rendered_kinds], kube)
    observed = S.CascadeObserved(
        deployment=kube.get("apps/v1", "Deployment", namespace, gateway_name(name)),
        desired_replicas=spec.gateway.replicas,
        tiers=[tier.to_status() for tier in tiers],
        endpoint=rendered.endpoint,
        model_name=rendered.model_name,
        config_hash=rendered.config_hash,
        cache_endpoint=binding.settings["redis_url"] if binding else None,
        auth_mode=spec.auth.mode,
        cache=cache_condition,
        apply_error=apply_error,
    )
    return _report(body, kube, observed, now, emit, applied)


def _report(body: dict[str, Any], kube: KubeClient, observed: S.CascadeObserved, now: datetime, emit: EmitEvent,
            applied: dict[str, str]) -> Outcome:
    generation = body["metadata"].get("generation")
    written = report_status(body, lambda current: S.cascade_status(current, observed, generation=generation, now=now), kube,
                            emit, is_problem=is_problem)
    return Outcome(applied=applied, status_written=written, error=observed.apply_error)


def is_problem(condition: dict[str, Any]) -> bool:
    """Degraded, or one of the conditions a cascade or cache tier needs that turned False."""
    if condition["type"] == R.DEGRADED:
        return condition["status"] == "True"
    return condition["type"] in (R.RESOLVED, S.TIERS_READY, S.CACHE_READY) and condition["status"] == "False"
