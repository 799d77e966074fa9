"""Argo CD health checks (helm/neuroscale/files/argocd-health/*.lua), run by a real Lua 5.1 the way Argo CD runs
them, on statuses the operator's own pure status builders produce from realistic observations.

Covers, for each kind: no status yet and a generation the operator has not observed are Progressing (even over a
status that said Ready); pods still starting are Progressing with Ready's message; Ready=True is Healthy; a spec
that cannot work (ModelDeployment Sized=False, InferenceCascade/CacheTier Resolved=False) and Degraded=True are
Degraded with the condition's message; replicas 0 (ModelDeployment, InferenceCascade gateway) is Suspended; a
cascade whose tier or cache is not ready still serves, so it is Healthy. Also: the committed argocd-cm patch is the
one the scripts generate, parses back to the scripts byte for byte under the keys Argo CD reads and is a valid
ConfigMap; the harness refuses what Argo CD refuses (the string library, string methods, unknown statuses).
"""

from __future__ import annotations

import copy
import difflib
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

import kubernetes_validate
import pytest
import yaml
from lupa.lua51 import LuaError
from pydantic import ValidationError

from neuroscale import reasons as R
from neuroscale.api.cachetier import CacheTierSpec
from neuroscale.api.inferencecascade import InferenceCascadeSpec
from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.api.registry import KINDS
from neuroscale.api.schema import describe
from neuroscale.conditions import ConditionUpdate
from neuroscale.render import render_model_deployment
from neuroscale.render.cachetier import render_cache_tier
from neuroscale.render.inferencecascade import render_inference_cascade, resolve_tiers
from neuroscale.sizing.sizer import SizingError
from neuroscale.status.cachetier import CacheObserved, cache_tier_status
from neuroscale.status.inferencecascade import CACHE_READY, CACHE_TIER_NOT_FOUND, CascadeObserved, cascade_status
from neuroscale.status.modeldeployment import Observed, model_deployment_status
from tests.support.argocd import (
    PATCH_FILE, REGENERATE, argocd_cm_patch, health_key, run_health, script_path, scripts,
)
from tests.support.factories import deep_merge, make_cache_tier, make_inference_cascade, make_model_deployment
from tests.support.kube import NAMESPACE

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
IMAGE = "neuroscale/neuroscale:test"
APPLY_ERROR = 'Deployment/llama: admission webhook "validate.kyverno.svc" denied the request'


def health(obj: dict[str, Any]) -> dict[str, Any]:
    """What Argo CD shows for `obj`: its kind's script run on it."""
    path = script_path(obj["kind"])
    return run_health(path.read_text(), obj, name=path.name)


def reported(body: dict[str, Any], status: dict[str, Any] | None) -> dict[str, Any]:
    """`body` carrying `status` as the operator wrote it (None: the operator has not written one yet)."""
    obj = copy.deepcopy(body)
    if status is not None:
        obj["status"] = status
    return obj


def live(deployment: dict[str, Any], *, ready: int, updated: int | None = None,
         conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A rendered Deployment as the cluster returns it: a generation, and the Deployment controller's status
    (which omits zero counts)."""
    want = deployment["spec"]["replicas"]
    counts = {"replicas": want, "updatedReplicas": want if updated is None else updated, "readyReplicas": ready,
              "availableReplicas": ready}
    status = {"observedGeneration": 1, **{k: v for k, v in counts.items() if v}, "conditions": conditions or []}
    return deep_merge(deployment, {"metadata": {"generation": 1}, "status": status})


def deployment_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == "Deployment")


# --- ModelDeployment ------------------------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _rendered_md(replicas: int):
    spec = ModelDeploymentSpec.model_validate(make_model_deployment()["spec"])
    return render_model_deployment("llama", NAMESPACE, spec, replicas)


def md_observed(replicas: int, *, ready: int | None = None, updated: int | None = None,
                conditions: list[dict[str, Any]] | None = None, deployed: bool = True, **overrides: Any) -> Observed:
    """What a ModelDeployment reconcile of the factory spec observes: its rendered Deployment live with `ready` of
    `replicas` replicas ready (and `conditions` from the Deployment controller), or not created yet."""
    rendered = _rendered_md(replicas)
    deployment = live(deployment_of(rendered.objects), ready=replicas if ready is None else ready, updated=updated,
                      conditions=conditions) if deployed else None
    fields: dict[str, Any] = dict(
        desired_replicas=replicas, deployment=deployment,
        sizing={"instanceType": rendered.sizing.instance.name, "explanation": rendered.sizing.explanation},
        price_per_hour=rendered.sizing.price_per_hour, selector=rendered.selector_string,
        endpoint=rendered.endpoint, served_model_name=rendered.served_model_name,
    )
    return Observed(**{**fields, **overrides})


def model_deployment(observed: Observed, *, generation: int = 1, previous: dict[str, Any] | None = None,
                     **spec_overrides: Any) -> dict[str, Any]:
    body = make_model_deployment(**spec_overrides)
    body["metadata"]["generation"] = generation
    return reported(body, model_deployment_status(previous, observed, generation=generation, now=NOW))


def md_spec_problem(**spec_overrides: Any) -> ConditionUpdate:
    """Sized=False exactly as the controller makes it from a spec that cannot work."""
    try:
        spec = ModelDeploymentSpec.model_validate(make_model_deployment(**spec_overrides)["spec"])
        render_model_deployment("llama", NAMESPACE, spec, 1)
    except ValidationError as exc:
        return ConditionUpdate(R.SIZED, "False", R.INVALID_SPEC, describe(exc))
    except SizingError as exc:
        return ConditionUpdate(R.SIZED, "False", R.SIZING_FAILED, str(exc))
    raise AssertionError(f"the spec {spec_overrides} works")


def test_model_deployment_ready_is_healthy():
    assert health(model_deployment(md_observed(2, ready=1))) == {"status": "Healthy",
                                                                  "message": "1 of 2 replicas ready"}


@pytest.mark.parametrize("observed", [md_observed(1, deployed=False), md_observed(1, ready=0)],
                         ids=["deployment-being-created", "model-loading"])
def test_model_deployment_whose_pods_load_is_progressing(observed: Observed):
    assert health(model_deployment(observed)) == {"status": "Progressing", "message": "no replica is ready yet"}


@pytest.mark.parametrize("overrides, expected", [
    ({"model": {"source": "hf://meta-llama/Llama-3.3-70B-Instruct"}, "accelerator": {"instanceType": "inf2.xlarge"}},
     "smallest fit: inf2.48xlarge with TP 24"),
    ({"model": {"maxModelLen": 64}}, "spec.model.maxModelLen: Input should be greater than or equal to 128"),
], ids=["model-fits-no-allowed-instance", "invalid-spec"])
def test_model_deployment_spec_that_cannot_work_is_degraded(overrides: dict[str, Any], expected: str):
    """The user edits a healthy ModelDeployment into one that cannot work: Sized=False, the old pods keep running."""
    healthy = model_deployment(md_observed(1))["status"]
    problem = md_spec_problem(**overrides)
    obj = model_deployment(Observed(0, None, spec_problem=problem), generation=2, previous=healthy, **overrides)
    result = health(obj)
    assert result["status"] == "Degraded" and expected in result["message"]


@pytest.mark.parametrize("observed, expected", [
    (md_observed(1, apply_error=APPLY_ERROR), "denied the request"),
    (md_observed(1, ready=0, updated=0, conditions=[
        {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
         "message": 'ReplicaSet "llama-5d9c" has timed out progressing.'}]),
     "has timed out progressing"),
    (md_observed(1, ready=0, conditions=[
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
         "message": 'pods "llama-5d9c-" is forbidden: exceeded quota: neuron'}]),
     "exceeded quota: neuron"),
], ids=["apply-failed", "rollout-stalled", "replica-failure"])
def test_model_deployment_degraded_condition_is_degraded(observed: Observed, expected: str):
    obj = model_deployment(observed)
    assert {"type": "Degraded", "status": "True"}.items() <= next(
        c for c in obj["status"]["conditions"] if c["type"] == "Degraded").items()
    result = health(obj)
    assert result["status"] == "Degraded" and expected in result["message"]


def test_model_deployment_scaled_to_zero_is_suspended():
    assert health(model_deployment(md_observed(0), replicas=0)) == {"status": "Suspended",
                                                                     "message": "replicas is 0"}


# --- InferenceCascade -----------------------------------------------------------------------------------------


def cascade_observed(*, gateway_replicas: int = 2, ready: int | None = None, tier_ready: bool = True,
                     **overrides: Any) -> CascadeObserved:
    """What a cascade reconcile observes: its tiers resolved against a ModelDeployment `llama` the operator reported
    on (ready or still loading), the gateway rendered, and the gateway Deployment with `ready` replicas available."""
    body = make_inference_cascade(gateway={"replicas": gateway_replicas})
    spec = InferenceCascadeSpec.model_validate(body["spec"])
    llama = model_deployment(md_observed(1, ready=1 if tier_ready else 0))
    tiers = resolve_tiers(spec, NAMESPACE, {"llama": llama})
    rendered = render_inference_cascade("chat", NAMESPACE, spec, tiers, None, image=IMAGE)
    gateway = live(deployment_of(rendered.objects), ready=gateway_replicas if ready is None else ready)
    fields: dict[str, Any] = dict(
        deployment=gateway, desired_replicas=gateway_replicas, tiers=[t.to_status() for t in tiers],
        endpoint=rendered.endpoint, model_name=rendered.model_name, config_hash=rendered.config_hash,
    )
    return CascadeObserved(**{**fields, **overrides})


def inference_cascade(observed: CascadeObserved, *, generation: int = 1,
                      previous: dict[str, Any] | None = None) -> dict[str, Any]:
    body = make_inference_cascade(cacheTierRef={"name": "chat-cache"})
    body["metadata"]["generation"] = generation
    return reported(body, cascade_status(previous, observed, generation=generation, now=NOW))


def test_inference_cascade_serving_is_healthy():
    assert health(inference_cascade(cascade_observed())) == {
        "status": "Healthy",
        "message": "2 of 2 gateway replicas available"}


def test_inference_cascade_with_a_tier_or_cache_not_ready_still_serves_so_is_healthy():
    """The gateway escalates past a tier that is not ready and serves uncached without its CacheTier."""
    missing_cache = ConditionUpdate(CACHE_READY, "False", CACHE_TIER_NOT_FOUND, "CacheTier chat-cache not found")
    result = health(inference_cascade(cascade_observed(tier_ready=False, cache=missing_cache)))
    assert result["status"] == "Healthy" and "not ready: small (" in result["message"]


def test_inference_cascade_whose_gateway_starts_is_progressing():
    assert health(inference_cascade(cascade_observed(ready=0))) == {
        "status": "Progressing", "message": "no gateway replica is available yet"}


def test_inference_cascade_spec_that_cannot_work_is_degraded():
    """Resolved=False, as the controller reports an invalid spec, over a cascade that was serving."""
    with pytest.raises(ValidationError) as invalid:
        InferenceCascadeSpec.model_validate({"tiers": []})
    problem = ConditionUpdate(R.RESOLVED, "False", R.INVALID_SPEC, describe(invalid.value))
    serving = inference_cascade(cascade_observed())["status"]
    result = health(inference_cascade(CascadeObserved(spec_problem=problem), generation=2, previous=serving))
    assert result == {"status": "Degraded", "message": "spec.tiers: List should have at least 1 item after "
                                                       "validation, not 0"}


def test_inference_cascade_apply_failure_is_degraded():
    result = health(inference_cascade(cascade_observed(apply_error=APPLY_ERROR)))
    assert result == {"status": "Degraded", "message": APPLY_ERROR}


def test_inference_cascade_gateway_scaled_to_zero_is_suspended():
    result = health(inference_cascade(cascade_observed(gateway_replicas=0)))
    assert result == {"status": "Suspended", "message": "gateway replicas is 0"}


# --- CacheTier ------------------------------------------------------------------------------------------------


def cache_observed(*, ready: int = 1, **spec_fields: Any) -> CacheObserved:
    """What a CacheTier reconcile of the factory spec (top-level fields replaced) observes: the rendered Redis
    (inCluster) with `ready` replicas, or none (external)."""
    spec = CacheTierSpec.model_validate({**make_cache_tier()["spec"], **spec_fields})
    rendered = render_cache_tier("answers", NAMESPACE, spec)
    redis = live(deployment_of(rendered.objects), ready=ready) if rendered.objects else None
    return CacheObserved(backend=rendered.backend, endpoint=rendered.endpoint, mode=spec.mode, deployment=redis)


def cache_tier(observed: CacheObserved, *, generation: int = 1,
               previous: dict[str, Any] | None = None) -> dict[str, Any]:
    body = make_cache_tier()
    body["metadata"]["generation"] = generation
    return reported(body, cache_tier_status(previous, observed, generation=generation, now=NOW))


@pytest.mark.parametrize("observed, expected", [
    (cache_observed(), "Redis ready at redis://answers-redis.ns1.svc.cluster.local:6379/0"),
    (cache_observed(backend={"external": {"url": "rediss://cache.example.internal:6380/0"}}),
     "external endpoint rediss://cache.example.internal:6380/0 (validated, not probed by the operator)"),
], ids=["in-cluster", "external"])
def test_cache_tier_ready_is_healthy(observed: CacheObserved, expected: str):
    assert health(cache_tier(observed)) == {"status": "Healthy", "message": expected}


def test_cache_tier_whose_redis_starts_is_progressing():
    assert health(cache_tier(cache_observed(ready=0))) == {"status": "Progressing",
                                                           "message": "Redis is not ready yet"}


def test_cache_tier_spec_that_cannot_work_is_degraded():
    with pytest.raises(ValidationError) as invalid:
        CacheTierSpec.model_validate({"backend": {"external": {"url": "redis://user:secret@cache:6379/0"}}})
    problem = ConditionUpdate(R.RESOLVED, "False", R.INVALID_SPEC, describe(invalid.value))
    ready = cache_tier(cache_observed())["status"]
    result = health(cache_tier(CacheObserved(spec_problem=problem), generation=2, previous=ready))
    assert result["status"] == "Degraded"
    assert result["message"].startswith("spec.backend.external.url: a URL must not carry credentials")
    assert "secret" not in result["message"]


def test_cache_tier_apply_failure_is_degraded():
    observed = CacheObserved(backend="inCluster", endpoint="redis://answers-redis.ns1.svc.cluster.local:6379/0",
                             mode="exact", deployment=None, apply_error=APPLY_ERROR)
    assert health(cache_tier(observed)) == {"status": "Degraded", "message": APPLY_ERROR}


# --- every kind -----------------------------------------------------------------------------------------------

HEALTHY = {
    "ModelDeployment": lambda generation: model_deployment(md_observed(1), generation=generation),
    "InferenceCascade": lambda generation: inference_cascade(cascade_observed(), generation=generation),
    "CacheTier": lambda generation: cache_tier(cache_observed(), generation=generation),
}


def test_every_kind_has_a_health_check():
    assert set(HEALTHY) == {kind.kind for kind in KINDS} == set(scripts())


@pytest.mark.parametrize("kind", HEALTHY)
def test_a_resource_the_operator_has_not_reported_on_is_progressing(kind: str):
    obj = HEALTHY[kind](3)
    del obj["status"]
    assert health(obj) == {"status": "Progressing", "message": "Waiting for the operator to observe generation 3"}


@pytest.mark.parametrize("kind", HEALTHY)
def test_a_spec_edit_the_operator_has_not_observed_is_progressing_over_a_ready_status(kind: str):
    obj = HEALTHY[kind](1)
    assert health(obj)["status"] == "Healthy"
    obj["metadata"]["generation"] = 2
    assert health(obj) == {"status": "Progressing", "message": "Waiting for the operator to observe generation 2"}


# --- the argocd-cm patch and the harness ----------------------------------------------------------------------


def test_committed_argocd_cm_patch_is_generated_from_the_scripts():
    expected, committed = argocd_cm_patch(), PATCH_FILE.read_text()
    diff = "\n".join(difflib.unified_diff(committed.splitlines(), expected.splitlines(), "committed", "generated",
                                         lineterm="", n=1))
    assert committed == expected, f"run `{REGENERATE}` and commit the result:\n{diff}"


def test_argocd_cm_patch_carries_each_script_under_the_key_argo_cd_reads():
    patch = yaml.safe_load(argocd_cm_patch())
    assert patch["data"] == {f"resource.customizations.health.neuroscale.io_{kind}": script
                             for kind, script in scripts().items()}
    assert health_key("CacheTier") == "resource.customizations.health.neuroscale.io_CacheTier"
    assert (patch["kind"], patch["metadata"]) == ("ConfigMap", {"name": "argocd-cm"})
    kubernetes_validate.validate(patch, "1.30", strict=True)


def test_patch_comparison_notices_an_edited_script():
    by_kind = scripts()
    by_kind["CacheTier"] = by_kind["CacheTier"].replace('"Healthy"', '"Fine"')
    assert argocd_cm_patch(by_kind) != argocd_cm_patch()


@pytest.mark.parametrize("script, refusal", [
    ('return {status = string.format("%s", "Healthy")}', "attempt to index global 'string'"),
    ('local s = "Healthy"; return {status = s:upper()}', "attempt to index local 's'"),
    ("return {status = 7 // 2}", "unexpected symbol"),
    ('return {status = "Fine"}', "status 'Fine'"),
    ('return "Healthy"', "not a table"),
], ids=["string-library", "string-method", "lua-5.3-syntax", "unknown-status", "no-table"])
def test_harness_refuses_what_argo_cd_refuses(script: str, refusal: str):
    with pytest.raises((LuaError, AssertionError), match=refusal):
        run_health(script, {"metadata": {"generation": 1}})
