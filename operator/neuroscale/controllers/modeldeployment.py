"""Reconcile one ModelDeployment: size and render it, apply the difference, report status and Events."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from neuroscale import reasons as R
from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.api.schema import describe
from neuroscale.conditions import ConditionUpdate
from neuroscale.controllers.compile_cache import ArtifactStore, observe
from neuroscale.controllers.children import (
    EmitEvent, Outcome, apply_children, delete_children, report_status,
)
from neuroscale.k8s.client import KubeClient
from neuroscale.render.modeldeployment import render_model_deployment
from neuroscale.sizing import SizingError
from neuroscale.status.modeldeployment import Observed, model_deployment_status

KIND = "ModelDeployment"
CHILD_KINDS = (("apps/v1", "Deployment"), ("v1", "Service"), ("policy/v1", "PodDisruptionBudget"),
               ("v1", "ServiceAccount"))


def owned_children(name: str) -> list[tuple[str, str, str]]:
    """Every child a ModelDeployment may have is named after it."""
    return [(api_version, kind, name) for api_version, kind in CHILD_KINDS]


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


def reconcile(body: dict[str, Any], kube: KubeClient, *, now: datetime, emit: EmitEvent,
              artifacts: ArtifactStore | None = None) -> Outcome:
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
    except SizingError as exc:  # a model that fits no instance the spec allows
        problem = ConditionUpdate(R.SIZED, "False", R.SIZING_FAILED, str(exc))
        return _report(body, kube, Observed(0, live, spec_problem=problem), generation, now, emit, {})
    except ValueError as exc:  # the spec cannot work: the models' rules (pydantic's errors) or the renderer's
        message = describe(exc) if isinstance(exc, ValidationError) else str(exc)
        problem = ConditionUpdate(R.SIZED, "False", R.INVALID_SPEC, message)
        return _report(body, kube, Observed(0, live, spec_problem=problem), generation, now, emit, {})

    applied, apply_error = apply_children(body, rendered.objects, kube, emit, known={f"Deployment/{name}": live})
    if not any(o["kind"] == "ServiceAccount" for o in rendered.objects):
        # The spec now names an existing ServiceAccount: the one the operator made (if any) is no longer used.
        delete_children(body, [("v1", "ServiceAccount", name)], kube)
    if any(v != "unchanged" for k, v in applied.items() if k.startswith("Deployment/")):
        live = kube.get("apps/v1", "Deployment", namespace, name)

    sizing = rendered.sizing
    view = observe(body, rendered, live, kube, artifacts, now=now)
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
            **({"speculatorGiB": round(sizing.speculator_gib, 2)} if sizing.speculator_gib else {}),
            **({"adaptersGiB": round(sizing.adapters_gib, 2)} if sizing.adapters_gib else {}),
        },
        price_per_hour=sizing.price_per_hour,
        cost_per_million_tokens=sizing.cost_per_million_tokens,
        selector=rendered.selector_string,
        endpoint=rendered.endpoint,
        served_model_name=rendered.served_model_name,
        adapters=[{"name": a.name, "source": a.source, "rank": a.rank} for a in spec.adapters],
        apply_error=apply_error,
        compile_cache=view.compile_cache,
        compile_cache_condition=view.condition,
        cold_start=view.cold_start,
        scales_to_zero=bool(spec.autoscaling and spec.autoscaling.enabled and spec.autoscaling.min_replicas == 0),
    )
    return _report(body, kube, observed, generation, now, emit, applied)


def _report(
    body: dict[str, Any], kube: KubeClient, observed: Observed, generation: int | None, now: datetime,
    emit: EmitEvent, applied: dict[str, str],
) -> Outcome:
    written = report_status(
        body, lambda current: model_deployment_status(current, observed, generation=generation, now=now), kube, emit,
        is_problem=_is_problem, announced=(R.SIZED, R.READY),
    )
    return Outcome(applied=applied, status_written=written, error=observed.apply_error)


def _is_problem(condition: dict[str, Any]) -> bool:
    return (condition["type"], condition["status"]) in ((R.SIZED, "False"), (R.DEGRADED, "True"),
                                                        (R.COMPILE_CACHE, "False"))
