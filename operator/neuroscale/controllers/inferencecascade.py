"""Reconcile one InferenceCascade: resolve tiers and cache, render the gateway, apply the difference, report."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from neuroscale import reasons as R
from neuroscale.api.cachetier import CacheTierSpec
from neuroscale.api.common import API_VERSION
from neuroscale.api.inferencecascade import InferenceCascadeSpec
from neuroscale.api.schema import describe
from neuroscale.conditions import ConditionUpdate, find
from neuroscale.controllers.modeldeployment import EmitEvent, Outcome
from neuroscale.k8s.client import KubeClient, KubeError
from neuroscale.k8s.diff import adopt
from neuroscale.render.cachetier import CacheBinding, cache_binding
from neuroscale.render.inferencecascade import gateway_name, render_inference_cascade, resolve_tiers
from neuroscale.status import inferencecascade as S

log = logging.getLogger(__name__)

KIND = "InferenceCascade"
CHILD_KINDS = (("v1", "ConfigMap"), ("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "ServiceAccount"))

__all__ = ["EmitEvent", "Outcome", "announce_transitions", "apply_children", "delete_children", "reconcile"]


def apply_children(owner: dict[str, Any], objects: list[dict], kube: KubeClient,
                   emit: EmitEvent) -> tuple[dict[str, str], str | None]:
    """Apply each child adopted by `owner`, in order; stop at the first failure and return it as a message."""
    applied: dict[str, str] = {}
    restored = find((owner.get("status") or {}).get("conditions"), R.READY) is not None
    for child in objects:
        key = f"{child['kind']}/{child['metadata']['name']}"
        try:
            applied[key] = kube.apply(adopt(child, owner))
        except KubeError as exc:
            log.warning("Applying %s for %s/%s failed: %s", key, owner["metadata"]["namespace"],
                        owner["metadata"]["name"], exc)
            return applied, f"{key}: {exc}"
        if applied[key] == "created":
            emit("Normal", "Restored" if restored else "Created", f"{'Recreated' if restored else 'Created'} {key}")
        elif applied[key] == "patched":
            emit("Normal", "Updated", f"Brought {key} in line with the spec")
    return applied, None


def delete_children(owner: dict[str, Any], children: Iterable[tuple[str, str, str]], kube: KubeClient) -> list[str]:
    """Delete the named children that `owner` really owns (matching ownerReference uid); others are left alone."""
    meta = owner["metadata"]
    deleted = []
    for api_version, kind, name in children:
        child = kube.get(api_version, kind, meta["namespace"], name)
        owners = ((child or {}).get("metadata") or {}).get("ownerReferences") or ()
        if child is not None and any(ref.get("uid") == meta.get("uid") for ref in owners):
            kube.delete(api_version, kind, meta["namespace"], name)
            deleted.append(f"{kind}/{name}")
    if deleted:
        log.info("Deleted %s of %s/%s", ", ".join(deleted), meta["namespace"], meta["name"])
    return deleted


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
    if not any(o["kind"] == "ServiceAccount" for o in rendered.objects):
        delete_children(body, [("v1", "ServiceAccount", gateway_name(name))], kube)
    observed = S.CascadeObserved(
        deployment=kube.get("apps/v1", "Deployment", namespace, gateway_name(name)),
        desired_replicas=spec.gateway.replicas,
        tiers=[tier.to_status() for tier in tiers],
        endpoint=rendered.endpoint,
        model_name=rendered.model_name,
        config_hash=rendered.config_hash,
        cache_endpoint=binding.settings["redis_url"] if binding else None,
        cache=cache_condition,
        apply_error=apply_error,
    )
    return _report(body, kube, observed, now, emit, applied)


def _report(body: dict[str, Any], kube: KubeClient, observed: S.CascadeObserved, now: datetime, emit: EmitEvent,
            applied: dict[str, str]) -> Outcome:
    meta = body["metadata"]
    current = body.get("status") or {}
    desired = S.cascade_status(current, observed, generation=meta.get("generation"), now=now)
    patch = S.cascade_status_patch(current, desired)
    announce_transitions(current.get("conditions"), desired.get("conditions"), emit)
    if patch:
        kube.patch(API_VERSION, KIND, meta["namespace"], meta["name"], {"status": patch}, subresource="status")
    return Outcome(applied=applied, status_written=bool(patch), error=observed.apply_error)


def _is_problem(condition: dict[str, Any]) -> bool:
    if condition["type"] == R.DEGRADED:
        return condition["status"] == "True"
    return condition["type"] in (R.RESOLVED, S.TIERS_READY, S.CACHE_READY) and condition["status"] == "False"


def announce_transitions(before: list[dict] | None, after: list[dict] | None, emit: EmitEvent) -> None:
    """An Event when a condition changes: a Warning for a problem, Normal for recovery and for becoming Ready."""
    for new in after or ():
        old = find(before, new["type"])
        if old is not None and (old["status"], old["reason"]) == (new["status"], new["reason"]):
            continue
        message = new["message"] or f"{new['type']} is {new['status']}"
        if _is_problem(new):
            emit("Warning", new["reason"], message)
        elif old is not None and _is_problem(old):
            emit("Normal", new["reason"], f"{message} (was: {old['reason']})")
        elif new["type"] == R.READY and new["status"] == "True":
            emit("Normal", new["reason"], message)
