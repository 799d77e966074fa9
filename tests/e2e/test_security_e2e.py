"""Hardening on a real API server, with the operator running in-process (issue "Hardening").

Covers: the real kube-apiserver refuses `user:password@` in every URL field of every kind and a port outside
1..65535 (422, at the field's path), and admits the same fields without them; a ModelDeployment whose
autoscaling.metrics.prometheusUrl points at a loopback server of its author's is queried without the operator's
bearer token (which the operator's own Prometheus still gets), and the body of a failed answer never reaches the
resource's status or Events; a cascade whose only tier is its own gateway Service is TiersReady=False
(TierLoopsBack) with a Warning Event; names too long for a child Service name the right kind (InferenceCascade,
ModelDeployment) and are InvalidSpec, not SizingFailed.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from neuroscale.runtime import OperatorConfig
from tests.e2e.cluster import eventually, running_operator
from tests.support.factories import make_inference_cascade, make_model_deployment
from tests.unit.test_security_prometheus import SECRET_BODY, TOKEN, Answer, Recorder
from tests.unit.test_security_urls import CASES, URL_FIELDS, with_port, with_userinfo

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GROUP, VERSION = "neuroscale.io", "v1alpha1"
PLURALS = {"ModelDeployment": "modeldeployments", "InferenceCascade": "inferencecascades", "CacheTier": "cachetiers"}


class Cluster:
    def __init__(self, api: Any, namespace: str) -> None:
        self.namespace = namespace
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.core = kubernetes.client.CoreV1Api(api)

    def create(self, obj: dict[str, Any], name: str | None = None, dry_run: bool = False) -> dict[str, Any]:
        body = copy.deepcopy(obj)
        body["metadata"] = {"name": name or obj["metadata"]["name"], "namespace": self.namespace}
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURALS[obj["kind"]], body,
                                                           **({"dry_run": "All"} if dry_run else {}))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURALS[kind], name)

    def events(self, name: str) -> list[Any]:
        return self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}").items


@pytest.fixture
def cluster(api: Any, namespace: str) -> Cluster:
    return Cluster(api, namespace)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


def refused(call: Any) -> tuple[int, str]:
    with pytest.raises(kubernetes.client.ApiException) as error:
        call()
    return error.value.status, json.loads(error.value.body)["message"]


# --- the API server -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", CASES, ids=["/".join(k) for k in CASES])
def test_the_api_server_refuses_credentials_in_every_url_field(cluster: Cluster, key: tuple[str, str]) -> None:
    build, path, sample = URL_FIELDS[key]
    admitted = cluster.create(build(sample), name=f"ok-{uuid.uuid4().hex[:6]}", dry_run=True)
    assert admitted["metadata"]["uid"]
    bad = with_userinfo(sample, "user:s3cr3t")
    code, message = refused(lambda: cluster.create(build(bad), name=f"bad-{uuid.uuid4().hex[:6]}"))
    assert code == 422 and f'{path}: Invalid value: "{bad}"' in message and "should match" in message


@pytest.mark.parametrize("port, admitted", [(0, False), (65535, True), (65536, False), (99999, False)])
def test_the_api_server_refuses_ports_outside_the_tcp_range(cluster: Cluster, port: int, admitted: bool) -> None:
    for key in ((k for k in CASES if URL_FIELDS[k][2].startswith(("http", "redis")))):
        build, path, sample = URL_FIELDS[key]
        create = lambda: cluster.create(build(with_port(sample, port)), name=f"p-{uuid.uuid4().hex[:6]}",  # noqa: E731
                                        dry_run=True)
        if admitted:
            create()
        else:
            code, message = refused(create)
            assert code == 422 and f"{path}: Invalid value" in message, (key, message)


# --- the operator -------------------------------------------------------------------------------------------------


async def test_a_per_resource_prometheus_url_gets_no_operator_token_and_no_body_in_status(
    cluster: Cluster, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    operators = Recorder()
    chosen = Recorder(Answer(status=500, body=SECRET_BODY.encode(), headers={"Content-Type": "text/plain"}))
    try:
        config = OperatorConfig(resync_seconds=3.0, autoscale_interval_seconds=1.0, prometheus_url=operators.url,
                                prometheus_bearer_token_file=str(token_file))
        chosen_md = make_model_deployment("chosen", cluster.namespace, autoscaling={
            "minReplicas": 1, "maxReplicas": 2, "metrics": {"prometheusUrl": chosen.url}})
        default_md = make_model_deployment("default", cluster.namespace, autoscaling={"minReplicas": 1,
                                                                                     "maxReplicas": 2})
        async with running_operator(cluster.namespace, config=config):
            await asyncio.to_thread(cluster.create, chosen_md)
            await asyncio.to_thread(cluster.create, default_md)

            def failing() -> dict[str, Any] | None:
                found = condition(cluster.get("ModelDeployment", "chosen"), "Autoscaling")
                return found if found and found["status"] == "False" and "HTTP 500" in found["message"] else None

            autoscaling = await eventually(failing, timeout=120)
            await eventually(lambda: operators.requests, timeout=120)
        assert chosen.requests, "the per-resource URL was queried"
        assert chosen.header_values("Authorization") == []
        assert set(operators.header_values("Authorization")) == {f"Bearer {TOKEN}"}
        assert autoscaling["reason"] == "MetricsUnavailable"
        published = json.dumps([cluster.get("ModelDeployment", "chosen").get("status"),
                                [e.message for e in cluster.events("chosen")]])
        assert "hunter2" not in published
    finally:
        operators.close()
        chosen.close()


async def test_a_cascade_whose_only_tier_is_its_own_gateway_says_so(cluster: Cluster) -> None:
    cascade = make_inference_cascade("chat", cluster.namespace)
    cascade["spec"]["tiers"] = [{"name": "loop", "openai": {"url": "http://chat-gateway:8080/v1", "model": "chat"}}]
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create, cascade)
        obj = await eventually(lambda: (c := cluster.get("InferenceCascade", "chat")) and condition(c, "TiersReady")
                               and c, timeout=120)
        warned = await eventually(lambda: [e for e in cluster.events("chat")
                                           if e.reason == "TierLoopsBack" and e.type == "Warning"], timeout=60)
    tiers = condition(obj, "TiersReady")
    assert (tiers["status"], tiers["reason"]) == ("False", "TierLoopsBack")
    assert "own gateway Service chat-gateway" in tiers["message"] and "own gateway" in warned[0].message
    assert obj["status"]["tiers"][0]["ready"] == "False"


async def test_names_too_long_for_a_service_name_the_kind_and_are_invalid_specs(cluster: Cluster) -> None:
    cascade = make_inference_cascade("c" * 56, cluster.namespace)
    model = make_model_deployment("m" * 64, cluster.namespace)
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create, cascade)
        await asyncio.to_thread(cluster.create, model)
        ic = await eventually(lambda: (c := cluster.get("InferenceCascade", "c" * 56)) and condition(c, "Resolved")
                              and c, timeout=120)
        md = await eventually(lambda: (c := cluster.get("ModelDeployment", "m" * 64)) and condition(c, "Sized")
                              and c, timeout=120)
    resolved, sized = condition(ic, "Resolved"), condition(md, "Sized")
    assert (resolved["status"], resolved["reason"]) == ("False", "InvalidSpec")
    assert "use a shorter InferenceCascade name (at most 55 characters)" in resolved["message"]
    assert "ModelDeployment" not in resolved["message"]
    assert (sized["status"], sized["reason"]) == ("False", "InvalidSpec")
    assert sized["message"].startswith("metadata.name: ModelDeployment name") and "use a shorter" in sized["message"]
