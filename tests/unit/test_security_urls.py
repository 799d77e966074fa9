"""No credentials in any URL field of any kind, and no port outside 1..65535 (issue "Hardening", items 2 and 5).

URLs are copied into status (status.tiers[].endpoint, status.endpoint), the gateway ConfigMap, Events and logs, so
`user:password@` must never get in. Covers: every URL field of the three generated CRDs (found by walking the
schemas, so a new one must join the table here) refuses userinfo in its CRD pattern (as the API server judges it)
and in the pydantic model, with a message that does not echo the password; http(s) and Redis URLs share one
authority pattern (tests/unit/test_api_parity.py holds the rest of the model to the CRD) and refuse ports 0 and
65536 and above while admitting 1 and 65535; a spec that bypassed the schema with such a URL is refused by the
operator (InvalidSpec) before anything is rendered, so no ConfigMap, tier status or cache endpoint carries it.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pydantic import ValidationError
from pydantic.alias_generators import to_camel

from neuroscale import reasons as R
from neuroscale.api.common import HTTP_URL, REDIS_URL
from neuroscale.api.crds import crd
from neuroscale.api.registry import KINDS
from tests.support.crd_schema import CrdSchema, openapi_schema
from tests.support.factories import make_cache_tier, make_inference_cascade, make_model_deployment
from tests.unit.test_security_messages import condition, reconcile

SCHEMAS = {kind.kind: CrdSchema(openapi_schema(crd(kind))) for kind in KINDS}
MODELS = {kind.kind: kind.spec for kind in KINDS}
NAMESPACE = "models"
PASSWORD = "s3cr3t-pa55"


def url_fields(schema: dict[str, Any], at: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, schema) of every string whose pattern names a scheme (`://`), or whose name says it is a URL."""
    name = at.rsplit(".", 1)[-1].rstrip("[]")
    if schema.get("type") == "string" and ("://" in schema.get("pattern", "")
                                           or re.search(r"(url|uri)$", name, re.IGNORECASE)):
        yield at, schema
    for key, sub in schema.get("properties", {}).items():
        yield from url_fields(sub, f"{at}.{key}" if at else key)
    if isinstance(schema.get("items"), dict):
        yield from url_fields(schema["items"], f"{at}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from url_fields(schema["additionalProperties"], f"{at}{{}}")


def with_spec(obj: dict[str, Any], **spec: Any) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["spec"].update(spec)
    return obj


def md(**spec: Any) -> dict[str, Any]:
    return make_model_deployment("llama", NAMESPACE, **spec)


def ic_tier(tier: dict[str, Any]) -> dict[str, Any]:
    return with_spec(make_inference_cascade("chat", NAMESPACE),
                     tiers=[{"name": "small", "modelDeployment": {"name": "llama"}}, {"name": "large", **tier}])


# (kind, path) → (an object with `url` at that path, the path in the object, a valid URL for the field).
Builder = Callable[[str], dict[str, Any]]
URL_FIELDS: dict[tuple[str, str], tuple[Builder, str, str]] = {
    ("ModelDeployment", "spec.autoscaling.metrics.prometheusUrl"): (
        lambda url: md(autoscaling={"metrics": {"prometheusUrl": url}}),
        "spec.autoscaling.metrics.prometheusUrl", "http://prometheus-server.monitoring:80"),
    ("ModelDeployment", "spec.model.source"): (
        lambda url: md(model={"source": url}), "spec.model.source", "hf://meta-llama/Llama-3.1-8B-Instruct"),
    ("ModelDeployment", "spec.speculativeDecoding.draftModel.source"): (
        lambda url: md(speculativeDecoding={"method": "eagle3", "draftModel": {"source": url}}),
        "spec.speculativeDecoding.draftModel.source", "s3://eagle-heads/llama-3.1-8b"),
    ("ModelDeployment", "spec.adapters[].source"): (
        lambda url: md(adapters=[{"name": "sql", "source": url}]), "spec.adapters[0].source", "hf://org/sql-lora"),
    ("ModelDeployment", "spec.compileCache.uri"): (
        lambda url: md(compileCache={"uri": url}), "spec.compileCache.uri", "s3://neuron-cache/llama"),
    ("InferenceCascade", "spec.tiers[].openai.url"): (
        lambda url: ic_tier({"openai": {"url": url, "model": "large-model"}}),
        "spec.tiers[1].openai.url", "https://llm.example.com:8443/v1"),
    ("InferenceCascade", "spec.tiers[].bedrock.endpointUrl"): (
        lambda url: ic_tier({"bedrock": {"modelId": "m", "region": "us-east-1", "endpointUrl": url}}),
        "spec.tiers[1].bedrock.endpointUrl", "https://vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com"),
    ("InferenceCascade", "spec.tiers[].sagemaker.endpointUrl"): (
        lambda url: ic_tier({"sagemaker": {"endpointName": "lmi", "region": "us-west-2", "endpointUrl": url}}),
        "spec.tiers[1].sagemaker.endpointUrl", "https://runtime.sagemaker.us-west-2.amazonaws.com/"),
    ("CacheTier", "spec.backend.external.url"): (
        lambda url: with_spec(make_cache_tier("answers", NAMESPACE), backend={"external": {"url": url}}),
        "spec.backend.external.url", "rediss://cache.example:6380/1"),
    ("CacheTier", "spec.semantic.embedding.url"): (
        lambda url: make_cache_tier("answers", NAMESPACE, mode="semantic",
                                    semantic={"embedding": {"kind": "openai", "url": url}}),
        "spec.semantic.embedding.url", "http://embedder.models:8080/v1"),
}
CASES = sorted(URL_FIELDS)


def with_userinfo(url: str, userinfo: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{userinfo}@{rest}"


def with_port(url: str, port: int) -> str:
    scheme, rest = url.split("://", 1)
    host, slash, path = rest.partition("/")
    return f"{scheme}://{host.split(':')[0]}:{port}{slash}{path}"


def model_errors(obj: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        MODELS[obj["kind"]].model_validate(obj["spec"])
    except ValidationError as error:
        return error.errors()
    return []


def wire_path(loc: tuple[Any, ...]) -> str:
    return "spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{to_camel(p)}" for p in loc)


def test_every_url_field_of_every_kind_is_checked_here() -> None:
    found = {(kind, path) for kind, schema in SCHEMAS.items()
             for path, _ in url_fields(schema.openapi["properties"]["spec"], "spec")}
    assert found == set(URL_FIELDS), "a URL field was added or removed: give it a row in URL_FIELDS"


def test_http_and_redis_url_fields_share_one_pattern() -> None:
    patterns = {}
    for kind, schema in SCHEMAS.items():
        for path, node in url_fields(schema.openapi["properties"]["spec"], "spec"):
            patterns[(kind, path)] = node["pattern"]
    http = {key for key, pattern in patterns.items() if pattern.startswith("^https?://")}
    assert {patterns[key] for key in http} == {HTTP_URL}
    assert patterns[("CacheTier", "spec.backend.external.url")] == REDIS_URL
    assert len(http) == 5


@pytest.mark.parametrize("key", CASES, ids=["/".join(k) for k in CASES])
def test_a_valid_url_is_admitted_by_the_crd_and_the_model(key: tuple[str, str]) -> None:
    build, _, sample = URL_FIELDS[key]
    obj = build(sample)
    assert SCHEMAS[key[0]].rejections(obj) == []
    assert model_errors(obj) == []


@pytest.mark.parametrize("userinfo", [f"user:{PASSWORD}", "user", f":{PASSWORD}", f"user:{PASSWORD}@more"])
@pytest.mark.parametrize("key", CASES, ids=["/".join(k) for k in CASES])
def test_userinfo_is_refused_by_the_crd_and_the_model(key: tuple[str, str], userinfo: str) -> None:
    build, path, sample = URL_FIELDS[key]
    obj = build(with_userinfo(sample, userinfo))
    refused = SCHEMAS[key[0]].rejections(obj)
    assert refused and all(line.startswith(f"{path}: ") for line in refused), refused
    errors = model_errors(obj)
    assert [wire_path(e["loc"]) for e in errors] == [path], errors
    assert PASSWORD not in json.dumps([e["msg"] for e in errors]), "the message must not repeat the password"
    if sample.startswith(("http", "redis")):
        assert "must not carry credentials" in errors[0]["msg"]


@pytest.mark.parametrize("port, admitted", [(0, False), (1, True), (8080, True), (65535, True), (65536, False),
                                            (99999, False), (123456, False)])
@pytest.mark.parametrize("key", [k for k in CASES if URL_FIELDS[k][2].startswith(("http", "redis"))],
                         ids=lambda k: "/".join(k))
def test_ports_outside_the_tcp_range_are_refused(key: tuple[str, str], port: int, admitted: bool) -> None:
    build, path, sample = URL_FIELDS[key]
    obj = build(with_port(sample, port))
    assert (SCHEMAS[key[0]].rejections(obj) == []) is admitted
    errors = model_errors(obj)
    assert (errors == []) is admitted, errors
    if not admitted:
        assert [wire_path(e["loc"]) for e in errors] == [path]


# --- the operator, when the schema was bypassed (an older CRD, a direct etcd write) --------------------------------


def test_a_tier_url_with_credentials_is_never_published() -> None:
    url = f"https://user:{PASSWORD}@llm.example.com/v1"
    obj, kube, events = reconcile(ic_tier({"openai": {"url": url, "model": "large-model"}}))
    resolved = condition(obj, R.RESOLVED)
    assert (resolved["status"], resolved["reason"]) == ("False", R.INVALID_SPEC)
    assert resolved["message"].startswith("spec.tiers[1].openai.url: a URL must not carry credentials")
    assert kube.of_kind("ConfigMap") == [] and kube.of_kind("Deployment") == []
    published = json.dumps({"status": obj["status"], "events": events, "objects": [
        o for key, o in kube.objects.items() if key[1] != "InferenceCascade"]})
    assert PASSWORD not in published


def test_a_redis_url_with_credentials_is_never_published() -> None:
    body = with_spec(make_cache_tier("answers", NAMESPACE),
                     backend={"external": {"url": f"redis://default:{PASSWORD}@cache.example:6379/0"}})
    obj, _, events = reconcile(body)
    assert condition(obj, R.READY)["status"] == "False"
    assert "endpoint" not in obj["status"]
    assert PASSWORD not in json.dumps({"status": obj["status"], "events": events})


def test_a_prometheus_url_with_credentials_is_refused_by_the_operator() -> None:
    obj, _, events = reconcile(md(autoscaling={"metrics": {"prometheusUrl": f"http://u:{PASSWORD}@evil.example/"}}))
    sized = condition(obj, R.SIZED)
    assert (sized["status"], sized["reason"]) == ("False", R.INVALID_SPEC)
    assert PASSWORD not in json.dumps({"status": obj["status"], "events": events})
