"""Messages and reasons users act on (issue "Hardening", item 5), through the real controllers.

Covers: a name too long (or not a DNS label) for a child Service names the kind the user must rename —
InferenceCascade for its gateway, CacheTier for its Redis, ModelDeployment for its own — and the longest name that
fits; such a name and an engine the spec cannot use are `InvalidSpec` (metadata.name / the CRD rule's message),
never `SizingFailed`, which stays for a model that fits nowhere; a Redis URL whose port is outside 1..65535 is
refused (Resolved=False, not Ready); a cascade tier that points at the cascade's own gateway Service (by short name,
namespace-qualified or full name, or a ModelDeployment tier named like the gateway) makes TiersReady=False with
its own reason, the tier not ready and a Warning Event, while look-alike hosts are not flagged.

The controllers run against `FakeKube`, an in-memory stand-in for the operator's KubeClient (get, server-side
apply, merge patch of the object and its status and scale subresources, delete), shared with the other
test_security_* modules.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

import pytest

from neuroscale import reasons as R
from neuroscale.api.common import API_VERSION
from neuroscale.api.inferencecascade import InferenceCascadeSpec
from neuroscale.controllers import cachetier as cachetier_controller
from neuroscale.controllers import inferencecascade as cascade_controller
from neuroscale.controllers import modeldeployment as md_controller
from neuroscale.render.inferencecascade import render_inference_cascade, resolve_tiers
from neuroscale.status import inferencecascade as S
from tests.support.factories import make_cache_tier, make_inference_cascade, make_model_deployment

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
NAMESPACE = "models"
IMAGE = "neuroscale/neuroscale:test"


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class FakeKube:
    """The KubeClient calls the controllers make, on a dict of objects keyed by (apiVersion, kind, ns, name)."""

    def __init__(self, *objects: dict[str, Any]) -> None:
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.writes: list[tuple[str, str, str]] = []
        for obj in objects:
            self.put(obj)

    def put(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(obj["apiVersion"], obj["kind"], meta.get("namespace", ""), meta["name"])] = copy.deepcopy(obj)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        found = self.objects.get((api_version, kind, namespace or "", name))
        return copy.deepcopy(found) if found is not None else None

    def apply(self, desired: dict[str, Any], **_: Any) -> str:
        meta = desired["metadata"]
        live = self.get(desired["apiVersion"], desired["kind"], meta.get("namespace"), meta["name"])
        self.writes.append(("apply", desired["kind"], meta["name"]))
        self.put({**desired, **({"status": live["status"]} if live and "status" in live else {})})
        return "created" if live is None else "patched"

    def patch(self, api_version: str, kind: str, namespace: str | None, name: str, patch: dict[str, Any],
              subresource: str | None = None, **_: Any) -> dict[str, Any]:
        key = (api_version, kind, namespace or "", name)
        obj = self.objects[key]
        self.writes.append((subresource or "patch", kind, name))
        if subresource == "status":
            obj["status"] = merge_patch(obj.get("status") or {}, patch.get("status") or {})
        elif subresource == "scale":
            obj["spec"]["replicas"] = patch["spec"]["replicas"]
        else:
            self.objects[key] = merge_patch(obj, patch)
        return copy.deepcopy(self.objects[key])

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        self.writes.append(("delete", kind, name))
        return self.objects.pop((api_version, kind, namespace or "", name), None) is not None

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [obj for (_, k, _, _), obj in self.objects.items() if k == kind]


class Events(list):
    """An EmitEvent that keeps (type, reason, message)."""

    def __call__(self, type_: str, reason: str, message: str) -> None:
        self.append((type_, reason, message))


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    found = next((c for c in ((obj or {}).get("status") or {}).get("conditions", []) if c["type"] == type_), None)
    assert found is not None, f"no {type_} condition in {(obj or {}).get('status')}"
    return found


def stored(kube: FakeKube, body: dict[str, Any]) -> dict[str, Any]:
    got = kube.get(API_VERSION, body["kind"], body["metadata"]["namespace"], body["metadata"]["name"])
    assert got is not None
    return got


def reconcile(body: dict[str, Any], *extra: dict[str, Any]) -> tuple[dict[str, Any], FakeKube, Events]:
    """Store `body` (as etcd holds it, schema or not) and the `extra` objects, run its kind's reconcile once."""
    kube, events = FakeKube(body, *extra), Events()
    if body["kind"] == "ModelDeployment":
        md_controller.reconcile(body, kube, now=NOW, emit=events)
    elif body["kind"] == "InferenceCascade":
        cascade_controller.reconcile(body, kube, now=NOW, emit=events, image=IMAGE)
    else:
        cachetier_controller.reconcile(body, kube, now=NOW, emit=events)
    return stored(kube, body), kube, events


# --- names: the right kind, the right reason ---------------------------------------------------------------------


@pytest.mark.parametrize("body, kind, child", [
    (make_inference_cascade("c" * 56, NAMESPACE), "InferenceCascade", "c" * 56 + "-gateway"),
    (make_cache_tier("r" * 58, NAMESPACE), "CacheTier", "r" * 58 + "-redis"),
    (make_model_deployment("m" * 64, NAMESPACE), "ModelDeployment", None),
], ids=["cascade-gateway", "cache-redis", "model-deployment"])
def test_a_name_too_long_for_its_service_names_the_kind_to_rename(body: dict[str, Any], kind: str,
                                                                 child: str | None) -> None:
    obj, kube, events = reconcile(body)
    spec_condition = condition(obj, R.SIZED if kind == "ModelDeployment" else R.RESOLVED)
    assert spec_condition["status"] == "False"
    assert spec_condition["reason"] == R.INVALID_SPEC
    message = spec_condition["message"]
    assert message.startswith(f"metadata.name: {kind} name ")
    assert f"use a shorter {kind} name" in message
    assert "ModelDeployment" not in message or kind == "ModelDeployment"
    if child is not None:
        assert repr(child) in message and "(at most " in message
    assert condition(obj, R.READY)["status"] == "False"
    assert not [w for w in kube.writes if w[0] == "apply"], "nothing is created for a name that cannot work"
    assert (("Warning", R.INVALID_SPEC, message)) in events


@pytest.mark.parametrize("body", [
    make_inference_cascade("c" * 55, NAMESPACE), make_cache_tier("r" * 57, NAMESPACE),
    make_model_deployment("m" * 63, NAMESPACE),
], ids=["cascade-55", "cache-57", "model-deployment-63"])
def test_the_longest_name_that_fits_is_served(body: dict[str, Any]) -> None:
    obj, kube, _ = reconcile(body)
    for type_ in (R.SIZED, R.RESOLVED):
        found = next((c for c in obj["status"]["conditions"] if c["type"] == type_), None)
        assert found is None or found["status"] == "True", found
    assert [w for w in kube.writes if w[0] == "apply"]


def test_a_cache_tier_name_its_redis_service_cannot_take_names_the_cache_tier() -> None:
    obj, _, _ = reconcile(make_cache_tier("answers.v2", NAMESPACE))
    resolved = condition(obj, R.RESOLVED)
    assert resolved["reason"] == R.INVALID_SPEC
    assert "CacheTier name 'answers.v2' cannot name its Redis Service 'answers.v2-redis'" in resolved["message"]
    assert "rename the CacheTier" in resolved["message"]


@pytest.mark.parametrize("spec, message", [
    ({"engine": {"name": "tgi"}, "model": {"dtype": "fp8"}},
     "spec: fp8/int8 weights, an fp8 KV cache and prefix caching need engine vllm"),
    ({"engine": {"name": "djl-lmi"}, "accelerator": {"families": [], "instanceType": "trn2.48xlarge"}},
     "spec: trn2 instances need engine vllm (TGI and DJL-LMI support inf2 and trn1 only)"),
    ({"engine": {"name": "tgi"}, "accelerator": {"families": ["trn2"]}},
     "spec: engine tgi runs on inf2, trn1, trn1n only, but accelerator.families allows trn2"),
    ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}},
     "spec.autoscaling: minReplicas must not exceed maxReplicas"),
], ids=["tgi-fp8", "djl-on-trn2", "tgi-families-trn2-only", "min-above-max"])
def test_a_spec_the_schema_did_not_check_is_invalid_not_a_sizing_failure(spec: dict[str, Any], message: str) -> None:
    """An older CRD or a direct etcd write let these through: the operator refuses them the way the CRD would."""
    live = {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "llama", "namespace": NAMESPACE}, "spec": {"replicas": 3}}
    obj, kube, _ = reconcile(make_model_deployment("llama", NAMESPACE, **spec), live)
    sized = condition(obj, R.SIZED)
    assert (sized["status"], sized["reason"]) == ("False", R.INVALID_SPEC)
    assert sized["message"].startswith(message)
    assert kube.get("apps/v1", "Deployment", NAMESPACE, "llama")["spec"]["replicas"] == 3, "left untouched"
    assert not [w for w in kube.writes if w[0] in ("apply", "scale")]


def test_a_model_that_fits_nowhere_is_still_a_sizing_failure() -> None:
    obj, _, _ = reconcile(make_model_deployment("llama", NAMESPACE, model={
        "source": "hf://meta-llama/Llama-3.1-405B-Instruct"}, accelerator={"instanceType": "inf2.xlarge"}))
    assert condition(obj, R.SIZED)["reason"] == R.SIZING_FAILED


# --- Redis port ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", [0, 65536, 99999])
def test_a_redis_port_outside_the_tcp_range_is_refused_not_ready(port: int) -> None:
    body = make_cache_tier("answers", NAMESPACE)
    body["spec"]["backend"] = {"external": {"url": f"redis://cache.example:{port}/0"}}
    obj, _, _ = reconcile(body)
    assert condition(obj, R.RESOLVED)["status"] == "False"
    assert condition(obj, R.READY)["status"] == "False"
    assert "port must be between 1 and 65535" in condition(obj, R.RESOLVED)["message"]
    assert "endpoint" not in obj["status"]


@pytest.mark.parametrize("port", [1, 6379, 65535])
def test_a_redis_port_inside_the_range_is_ready(port: int) -> None:
    body = make_cache_tier("answers", NAMESPACE)
    body["spec"]["backend"] = {"external": {"url": f"redis://cache.example:{port}/0"}}
    obj, _, _ = reconcile(body)
    assert condition(obj, R.READY)["status"] == "True"


# --- a tier that is the cascade's own gateway ---------------------------------------------------------------------


def cascade_with(tiers: list[dict[str, Any]], name: str = "chat") -> dict[str, Any]:
    body = make_inference_cascade(name, NAMESPACE)
    body["spec"]["tiers"] = tiers
    return body


def gateway_deployment(name: str = "chat") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": f"{name}-gateway", "namespace": NAMESPACE},
            "spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}}


@pytest.mark.parametrize("url", [
    f"http://chat-gateway.{NAMESPACE}.svc.cluster.local:8080/v1",
    "http://chat-gateway:8080/v1",
    f"http://CHAT-GATEWAY.{NAMESPACE}/v1",
    f"https://chat-gateway.{NAMESPACE}.svc:9999/v1",
    f"http://chat-gateway.{NAMESPACE}.svc.example.internal./v1",
])
def test_the_only_tier_pointing_at_its_own_gateway_is_reported(url: str) -> None:
    body = cascade_with([{"name": "loop", "openai": {"url": url, "model": "chat"}}])
    obj, _, events = reconcile(body)
    tiers = condition(obj, S.TIERS_READY)
    assert (tiers["status"], tiers["reason"]) == ("False", S.TIER_LOOPS_BACK)
    assert "loop points at this cascade's own gateway Service chat-gateway" in tiers["message"]
    (tier,) = obj["status"]["tiers"]
    assert tier["ready"] == "False" and "own gateway Service chat-gateway" in tier["message"]
    assert ("Warning", S.TIER_LOOPS_BACK, tiers["message"]) in events


def test_a_model_deployment_tier_named_like_the_gateway_is_reported_too() -> None:
    body = cascade_with([{"name": "small", "modelDeployment": {"name": "llama"}},
                         {"name": "loop", "modelDeployment": {"name": "chat-gateway"}}])
    obj, _, _ = reconcile(body, gateway_deployment())
    tiers = condition(obj, S.TIERS_READY)
    assert tiers["reason"] == S.TIER_LOOPS_BACK and tiers["message"].startswith("loop points")
    ready = condition(obj, R.READY)
    assert ready["status"] == "True" and S.TIER_LOOPS_BACK not in ready["reason"]
    assert "loop back into the gateway" in ready["message"], "Ready repeats why the tiers are not ready"


@pytest.mark.parametrize("url", [
    "http://chat-gateway.other-namespace.svc.cluster.local:8080/v1",  # another namespace's cascade of that name
    "http://chat-gateway-2:8080/v1",
    "http://llm.example.com/chat-gateway/v1",
    "http://gateway:8080/v1",
])
def test_look_alike_hosts_are_not_loops(url: str) -> None:
    obj, _, _ = reconcile(cascade_with([{"name": "other", "openai": {"url": url, "model": "chat"}}]))
    tiers = condition(obj, S.TIERS_READY)
    assert tiers["status"] == "True", tiers
    assert obj["status"]["tiers"][0]["ready"] == "Unknown"


def test_the_status_builder_flags_loops_from_the_gateway_endpoint_alone() -> None:
    spec = InferenceCascadeSpec.model_validate(cascade_with([
        {"name": "ok", "openai": {"url": "https://llm.example.com/v1", "model": "m"}},
        {"name": "loop", "openai": {"url": f"http://chat-gateway.{NAMESPACE}:8080/v1", "model": "m"}},
    ])["spec"])
    tiers = resolve_tiers(spec, NAMESPACE, {})
    rendered = render_inference_cascade("chat", NAMESPACE, spec, tiers, None, image=IMAGE)
    observed = S.CascadeObserved(deployment=gateway_deployment(), desired_replicas=2,
                                 tiers=[t.to_status() for t in tiers], endpoint=rendered.endpoint)
    status = S.cascade_status(None, observed, generation=1, now=NOW)
    assert [t["ready"] for t in status["tiers"]] == ["Unknown", "False"]
    assert observed.tiers[1]["ready"] == "Unknown", "the observation itself is not modified"
    assert S.tiers_condition(observed.tiers).status == "True", "without the gateway endpoint nothing is known"
