"""Reconcile one ModelDeployment: size and render it, apply the difference, report status and Events."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from neuroscale import reasons as R
from neuroscale.api.common import API_VERSION
from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.api.schema import describe
from neuroscale.conditions import ConditionUpdate, find
from neuroscale.k8s.client import KubeClient, KubeError
from neuroscale.k8s.diff import adopt
from neuroscale.render.modeldeployment import render_model_deployment
from neuroscale.sizing import SizingError
from neuroscale.status.modeldeployment import Observed, model_deployment_status, status_patch

log = logging.getLogger(__name__)

KIND = "ModelDeployment"
# (type, reason, message) → a Kubernetes Event on the ModelDeployment.
EmitEvent = Callable[[str, str, str], None]


@dataclass(frozen=True)
class Outcome:
    """What one reconcile did: the test suite and the benchmark count writes with it."""

    applied: dict[str, str]
    status_written: bool
    error: str | None = None


def replicas_to_render(spec: ModelDeploymentSpec, status: dict[str, Any], live: dict[str, Any] | None) -> int:
    """Who owns the replica count: the autoscaler when it is on, otherwise spec.replicas (and the scale subresource).

    With autoscaling on, the reconcile keeps the autoscaler's latest number (or the live count after an operator
    restart) within [min, max], so a drift resync never undoes a scaling decision.
    """
    scaling = spec.autoscaling
    if scaling is None or not scaling.enabled:
        return spec.replicas
    asked = (status.get("autoscaling") or {}).get("desiredReplicas")
    if asked is None and live is not None:
        asked = (live.get("spec") or {}).get("replicas")
    return min(max(int(asked if asked is not None else scaling.min_replicas), scaling.min_replicas),
               scaling.max_replicas)


def reconcile(body: dict[str, Any], kube: KubeClient, *, now: datetime, emit: EmitEvent) -> Outcome:
    """Bring the children of one ModelDeployment in line with its spec and report what is true.

    A spec the schema could not reject (a model that fits no instance, a name too long for a Service) becomes
    `Sized=False` with the reason, and the children already running are left untouched.
    """
    meta = body["metadata"]
    name, namespace = meta["name"], meta["namespace"]
    generation = meta.get("generation")
    current_status = body.get("status") or {}
    live = kube.get("apps/v1", "Deployment", namespace, name)

    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
        replicas = replicas_to_render(spec, current_status, live)
        rendered = render_model_deployment(name, namespace, spec, replicas)
    except ValidationError as exc:
        problem = ConditionUpdate(R.SIZED, "False", R.INVALID_SPEC, describe(exc))
        return _report(body, kube, Observed(0, live, spec_problem=problem), generation, now, emit, {})
    except (SizingError, ValueError) as exc:
        problem = ConditionUpdate(R.SIZED, "False", R.SIZING_FAILED, str(exc))
        return _report(body, kube, Observed(0, live, spec_problem=problem), generation, now, emit, {})

    applied: dict[str, str] = {}
    apply_error = None
    for child in rendered.objects:
        key = f"{child['kind']}/{child['metadata']['name']}"
        try:
            applied[key] = kube.apply(adopt(child, body))
        except KubeError as exc:
            apply_error = f"{key}: {exc}"
            log.warning("Applying %s for %s/%s failed: %s", key, namespace, name, exc)
            break
        if applied[key] == "created":
            # A child missing after the first successful reconcile was deleted by someone: say so.
            restored = find(current_status.get("conditions"), R.SIZED) is not None
            emit("Normal", "Restored" if restored else "Created", f"{'Recreated' if restored else 'Created'} {key}")
        elif applied[key] == "patched":
            emit("Normal", "Updated", f"Brought {key} in line with the spec")
    if any(v != "unchanged" for k, v in applied.items() if k.startswith("Deployment/")):
        live = kube.get("apps/v1", "Deployment", namespace, name)

    sizing = rendered.sizing
    observed = Observed(
        desired_replicas=replicas,
        deployment=live,
        sizing={
            "instanceType": sizing.instance.name,
            "tensorParallelDegree": sizing.tensor_parallel,
            "neuronDevices": sizing.neuron_devices,
            "weightsGiB": round(sizing.weights_gib, 2),
            "kvCacheGiB": round(sizing.kv_cache_gib, 2),
            "requiredGiB": round(sizing.required_gib, 2),
            "capacityGiB": round(sizing.capacity_gib, 2),
            "estimatedTokensPerSecond": round(sizing.tokens_per_second, 1),
            "explanation": sizing.explanation,
        },
        price_per_hour=sizing.price_per_hour,
        cost_per_million_tokens=sizing.cost_per_million_tokens,
        selector=",".join(f"{k}={v}" for k, v in sorted(rendered.selector.items())),
        endpoint=rendered.endpoint,
        served_model_name=rendered.served_model_name,
        apply_error=apply_error,
    )
    return _report(body, kube, observed, generation, now, emit, applied)


def _report(
    body: dict[str, Any], kube: KubeClient, observed: Observed, generation: int | None, now: datetime,
    emit: EmitEvent, applied: dict[str, str],
) -> Outcome:
    meta = body["metadata"]
    current = body.get("status") or {}
    desired = model_deployment_status(current, observed, generation=generation, now=now)
    patch = status_patch(current, desired)
    _announce_transitions(current.get("conditions"), desired.get("conditions"), emit)
    if patch:
        kube.patch(API_VERSION, KIND, meta["namespace"], meta["name"], {"status": patch}, subresource="status")
    return Outcome(applied=applied, status_written=bool(patch), error=observed.apply_error)


def _announce_transitions(before: list[dict] | None, after: list[dict] | None, emit: EmitEvent) -> None:
    """An Event for what a user must see in `kubectl describe`: sizing chosen or failed, ready, degraded, recovered."""
    for new in after or ():
        old = find(before, new["type"])
        if old is not None and (old["status"], old["reason"]) == (new["status"], new["reason"]):
            continue
        message = new["message"] or f"{new['type']} is {new['status']}"
        if new["type"] == R.SIZED:
            emit("Normal" if new["status"] == "True" else "Warning", new["reason"], message)
        elif new["type"] == R.DEGRADED and new["status"] == "True":
            emit("Warning", new["reason"], message)
        elif new["type"] == R.DEGRADED and old is not None and old["status"] == "True":
            emit("Normal", "Recovered", f"No longer degraded (was: {old['reason']})")
        elif new["type"] == R.READY and new["status"] == "True":
            emit("Normal", new["reason"], message)
