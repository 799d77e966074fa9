"""The generated InferenceCascade and CacheTier CRDs, checked the way an API server would check objects.

Covers: every `x-kubernetes-validations` CEL rule of both CRDs evaluated with cel-python against objects that must
pass and objects that must fail (exactly one tier kind, defaultMaxTier names a tier, modelName differs from tier
names, exactly one cache backend, embedding requirements, semantic settings only in semantic mode); the factories'
objects and the examples validate against the OpenAPI schema (jsonschema); a Redis URL with credentials, a tier
name that is not a DNS label and an empty tier list are rejected by the schema; tier names are a list-map key.
"""

from __future__ import annotations

from pathlib import Path

import celpy
import jsonschema
import pytest

from neuroscale import yamlio
from neuroscale.api.crds import crd
from neuroscale.api.registry import CACHE_TIER, INFERENCE_CASCADE
from tests.support.factories import make_cache_tier, make_inference_cascade

ROOT = Path(__file__).resolve().parents[2]


def schema(kind):
    return crd(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def node(kind, *path):
    current = schema(kind)["properties"]["spec"]
    for part in path:
        current = current["items"] if part == "[]" else current["properties"][part]
    return current


def validate(obj, kind) -> None:
    """OpenAPI v3.0 spells exclusive bounds as booleans, as JSON Schema draft 4 does."""
    jsonschema.Draft4Validator(schema(kind)).validate(obj)


def evaluate(rule: str, value) -> bool:
    env = celpy.Environment()
    program = env.program(env.compile(rule))
    return bool(program.evaluate({"self": celpy.json_to_cel(value)}))


def rules(kind, *path):
    return [r["rule"] for r in node(kind, *path)["x-kubernetes-validations"]]


def passes(kind, path, value) -> bool:
    return all(evaluate(rule, value) for rule in rules(kind, *path))


MD_TIER = {"name": "a", "modelDeployment": {"name": "llama"}}
BEDROCK_TIER = {"name": "b", "bedrock": {"modelId": "m", "region": "us-east-1"}}


@pytest.mark.parametrize("tier, ok", [
    (MD_TIER, True),
    (BEDROCK_TIER, True),
    ({"name": "c", "sagemaker": {"endpointName": "lmi", "region": "us-west-2"}}, True),
    ({"name": "d", "openai": {"url": "https://x/v1", "model": "m"}}, True),
    ({"name": "e"}, False),
    ({**MD_TIER, "bedrock": BEDROCK_TIER["bedrock"]}, False),
])
def test_tier_needs_exactly_one_kind(tier, ok):
    assert passes(INFERENCE_CASCADE, ("tiers", "[]"), tier) is ok


@pytest.mark.parametrize("spec, ok", [
    ({"tiers": [MD_TIER, BEDROCK_TIER]}, True),
    ({"tiers": [MD_TIER, BEDROCK_TIER], "escalation": {"defaultMaxTier": "a"}}, True),
    ({"tiers": [MD_TIER, BEDROCK_TIER], "escalation": {"defaultMaxTier": "z"}}, False),
    ({"tiers": [MD_TIER], "escalation": {}}, True),
    ({"tiers": [MD_TIER], "modelName": "chat"}, True),
    ({"tiers": [MD_TIER], "modelName": "a"}, False),
])
def test_cascade_spec_rules(spec, ok):
    assert passes(INFERENCE_CASCADE, (), spec) is ok


@pytest.mark.parametrize("backend, ok", [
    ({"inCluster": {}}, True),
    ({"external": {"url": "redis://r:6379/0"}}, True),
    ({}, False),
    ({"inCluster": {}, "external": {"url": "redis://r:6379/0"}}, False),
])
def test_cache_backend_needs_exactly_one(backend, ok):
    assert passes(CACHE_TIER, ("backend",), backend) is ok


@pytest.mark.parametrize("embedding, ok", [
    ({"kind": "local"}, True),
    ({"kind": "openai", "url": "http://embed/v1"}, True),
    ({"kind": "openai"}, False),
    ({"kind": "bedrock", "model": "amazon.titan-embed-text-v2:0", "region": "us-east-1"}, True),
    ({"kind": "bedrock", "model": "amazon.titan-embed-text-v2:0"}, False),
])
def test_embedding_rules(embedding, ok):
    assert passes(CACHE_TIER, ("semantic", "embedding"), embedding) is ok


@pytest.mark.parametrize("spec, ok", [
    ({"mode": "semantic", "semantic": {"similarityThreshold": 0.9}}, True),
    ({"mode": "exact"}, True),
    ({"mode": "exact", "semantic": {"similarityThreshold": 0.9}}, False),
])
def test_semantic_settings_only_in_semantic_mode(spec, ok):
    assert passes(CACHE_TIER, (), spec) is ok


def test_factories_validate_against_the_schema():
    validate(make_inference_cascade(), INFERENCE_CASCADE)
    validate(make_cache_tier(), CACHE_TIER)


@pytest.mark.parametrize("path", sorted(ROOT.glob("examples/cascade-*.yaml")), ids=lambda p: p.name)
def test_examples_validate_against_the_schema(path):
    by_kind = {"InferenceCascade": INFERENCE_CASCADE, "CacheTier": CACHE_TIER}
    docs = [d for d in yamlio.load_all(path.read_text()) if d["kind"] in by_kind]
    assert {d["kind"] for d in docs} == set(by_kind)
    for doc in docs:
        validate(doc, by_kind[doc["kind"]])


@pytest.mark.parametrize("obj", [
    make_cache_tier(backend={"external": {"url": "redis://user:secret@r:6379/0"}}),
    make_inference_cascade(tiers=[{"name": "Not_A_Label", "modelDeployment": {"name": "llama"}}]),
    make_inference_cascade(tiers=[]),
])
def test_schema_rejects_bad_objects(obj):
    kind = INFERENCE_CASCADE if obj["kind"] == "InferenceCascade" else CACHE_TIER
    with pytest.raises(jsonschema.ValidationError):
        validate(obj, kind)


def test_tier_names_are_a_list_map_key():
    tiers = node(INFERENCE_CASCADE, "tiers")
    assert tiers["x-kubernetes-list-type"] == "map" and tiers["x-kubernetes-list-map-keys"] == ["name"]
