"""The ModelDeployment CRD's speculative-decoding and LoRA-adapter fields, checked the way an API server uses them.

Covers: valid EAGLE / EAGLE3 / adapter specs pass the OpenAPI schema and every CEL rule; the schema bounds
(numSpeculativeTokens 1-16, acceptance rate strictly between 0 and 1, rank 1-512, at most 16 adapters, adapter names
usable as model names and `name=path` arguments, the method enum, hf:// or s3:// sources, required fields) refuse at
the right path; adapters are a list-map keyed by name; every new CEL rule (evaluated with cel-python, alone) admits
and refuses: method draft, a revision on an S3 draft or adapter, engine x method x instance for the speculation
rules and engine x instance for the adapter rules over their full products, and an adapter shadowing an explicit
servedModelName.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from neuroscale.api.adapters import (
    ADAPTER_MODEL_NAME_RULE,
    ADAPTER_REVISION_RULE,
    ADAPTERS_ENGINE_RULE,
    ADAPTERS_TRN2_RULE,
)
from neuroscale.api.crds import crd
from neuroscale.api.registry import MODEL_DEPLOYMENT
from neuroscale.api.speculative_decoding import (
    DRAFT_METHOD_RULE,
    DRAFT_REVISION_RULE,
    EAGLE_TRN2_RULE,
    SPECULATION_ENGINE_RULE,
)
from neuroscale.sizing import CATALOG
from tests.support.crd_schema import CrdSchema, openapi_schema, schema_at
from tests.support.factories import make_model_deployment

SCHEMA = CrdSchema(openapi_schema(crd(MODEL_DEPLOYMENT)))
ENGINES = ("vllm", "tgi", "djl-lmi")
METHODS = ("eagle", "eagle3")

# Every rule these fields add, with where it sits (test_crd_modeldeployment checks the CRD has exactly these more).
EXTENSION_RULES = {
    SPECULATION_ENGINE_RULE.message: "spec",
    EAGLE_TRN2_RULE.message: "spec",
    ADAPTERS_ENGINE_RULE.message: "spec",
    ADAPTERS_TRN2_RULE.message: "spec",
    ADAPTER_MODEL_NAME_RULE.message: "spec",
    DRAFT_METHOD_RULE.message: "spec.speculativeDecoding",
    DRAFT_REVISION_RULE.message: "spec.speculativeDecoding.draftModel",
    ADAPTER_REVISION_RULE.message: "spec.adapters[]",
}

EAGLE3 = {"method": "eagle3", "draftModel": {"source": "hf://yuhuili/EAGLE3-LLaMA3.1-Instruct-8B"}}
ADAPTER = {"name": "sql", "source": "hf://org/llama-3.1-8b-sql-lora", "rank": 16}


def md(**spec: Any) -> dict[str, Any]:
    return make_model_deployment(**spec)


def failed_rules(obj: dict[str, Any]) -> list[str]:
    return [v.rule.message + (f" [{v.detail}]" if v.detail else "") for v in SCHEMA.violations(obj)]


def schema_errors(obj: dict[str, Any]) -> list[str]:
    return [error.split(": ", 1)[0] for error in SCHEMA.errors(SCHEMA.defaulted(obj))]


VALID = {
    "eagle3": md(speculativeDecoding=EAGLE3),
    "eagle-s3-head-sized": md(speculativeDecoding={"method": "eagle", "numSpeculativeTokens": 7,
                                                   "expectedAcceptanceRate": 0.8,
                                                   "draftModel": {"source": "s3://heads/llama-eagle",
                                                                  "parametersBillions": 0.8}}),
    "adapters": md(adapters=[ADAPTER, {"name": "Support_v2.1", "source": "s3://loras/support", "rank": 512}]),
    "both-on-trn1": md(speculativeDecoding=EAGLE3, adapters=[ADAPTER],
                       accelerator={"instanceType": "trn1.32xlarge", "families": []}),
    "hub-revisions": md(speculativeDecoding={**EAGLE3, "draftModel": {**EAGLE3["draftModel"], "revision": "main"}},
                        adapters=[{**ADAPTER, "revision": "v1"}]),
}


@pytest.mark.parametrize("name", VALID)
def test_valid_objects_pass_schema_and_rules(name: str) -> None:
    obj = VALID[name]
    assert schema_errors(obj) == []
    assert failed_rules(obj) == []


SPEC = "spec.speculativeDecoding"
SCHEMA_INVALID = {
    "no tokens": (md(speculativeDecoding={**EAGLE3, "numSpeculativeTokens": 0}), f"{SPEC}.numSpeculativeTokens"),
    "too many tokens": (md(speculativeDecoding={**EAGLE3, "numSpeculativeTokens": 17}),
                        f"{SPEC}.numSpeculativeTokens"),
    "certain acceptance": (md(speculativeDecoding={**EAGLE3, "expectedAcceptanceRate": 1.0}),
                           f"{SPEC}.expectedAcceptanceRate"),
    "no acceptance": (md(speculativeDecoding={**EAGLE3, "expectedAcceptanceRate": 0.0}),
                      f"{SPEC}.expectedAcceptanceRate"),
    "unknown method": (md(speculativeDecoding={**EAGLE3, "method": "ngram"}), f"{SPEC}.method"),
    "no method": (md(speculativeDecoding={"draftModel": EAGLE3["draftModel"]}), SPEC),
    "no head": (md(speculativeDecoding={"method": "eagle3"}), SPEC),
    "head from a URL": (md(speculativeDecoding={**EAGLE3, "draftModel": {"source": "https://x/y"}}),
                        f"{SPEC}.draftModel.source"),
    "rank 0": (md(adapters=[{**ADAPTER, "rank": 0}]), "spec.adapters[0].rank"),
    "rank 1024": (md(adapters=[{**ADAPTER, "rank": 1024}]), "spec.adapters[0].rank"),
    "name with =": (md(adapters=[{**ADAPTER, "name": "a=b"}]), "spec.adapters[0].name"),
    "name with space": (md(adapters=[{**ADAPTER, "name": "a b"}]), "spec.adapters[0].name"),
    "adapter without source": (md(adapters=[{"name": "sql"}]), "spec.adapters[0]"),
    "seventeen adapters": (md(adapters=[{**ADAPTER, "name": f"a{i}"} for i in range(17)]), "spec.adapters"),
}


@pytest.mark.parametrize("case", SCHEMA_INVALID)
def test_schema_refuses_at_the_right_path(case: str) -> None:
    obj, path = SCHEMA_INVALID[case]
    assert set(schema_errors(obj)) == {path}


def test_adapters_are_a_list_map_keyed_by_name() -> None:
    assert SCHEMA.duplicates(md(adapters=[ADAPTER, {**ADAPTER, "rank": 8}])) != []
    assert SCHEMA.duplicates(md(adapters=[ADAPTER, {**ADAPTER, "name": "chat"}])) == []
    adapters = schema_at(SCHEMA.openapi, ".spec.adapters")
    assert adapters["x-kubernetes-list-type"] == "map"
    assert adapters["x-kubernetes-list-map-keys"] == ["name"]
    assert "name" in adapters["items"]["required"]


def test_method_draft_is_refused_with_the_reason() -> None:
    assert failed_rules(md(speculativeDecoding={**EAGLE3, "method": "draft"})) == [DRAFT_METHOD_RULE.message]
    assert "legacy vLLM v0 fork" in DRAFT_METHOD_RULE.message


def test_revisions_belong_to_hub_sources() -> None:
    s3_head = md(speculativeDecoding={**EAGLE3, "draftModel": {"source": "s3://heads/h", "revision": "main"}})
    assert failed_rules(s3_head) == [DRAFT_REVISION_RULE.message]
    s3_adapter = md(adapters=[{**ADAPTER, "source": "s3://loras/sql", "revision": "v1"}])
    assert failed_rules(s3_adapter) == [ADAPTER_REVISION_RULE.message]


def test_speculation_rules_over_every_engine_method_and_instance() -> None:
    outcomes = set()
    for engine, method, instance in itertools.product(ENGINES, METHODS, [None, *CATALOG]):
        accelerator = {"instanceType": instance, "families": []} if instance else {}
        obj = md(engine={"name": engine}, accelerator=accelerator, speculativeDecoding={**EAGLE3, "method": method})
        assert schema_errors(obj) == []
        trn2 = bool(instance and instance.startswith("trn2"))
        expected = {SPECULATION_ENGINE_RULE.message} if engine != "vllm" else set()
        if method == "eagle" and trn2:
            expected.add(EAGLE_TRN2_RULE.message)
        if engine != "vllm" and trn2:
            expected.add("trn2 instances need engine vllm (TGI and DJL-LMI support inf2 and trn1 only)")
        assert set(failed_rules(obj)) == expected, (engine, method, instance)
        outcomes.add(frozenset(expected))
    assert frozenset() in outcomes and frozenset({EAGLE_TRN2_RULE.message}) in outcomes


def test_adapter_rules_over_every_engine_and_instance() -> None:
    outcomes = set()
    for engine, instance, adapters in itertools.product(ENGINES, [None, *CATALOG], ([], [ADAPTER])):
        accelerator = {"instanceType": instance, "families": []} if instance else {}
        obj = md(engine={"name": engine}, accelerator=accelerator, adapters=adapters)
        trn2 = bool(instance and instance.startswith("trn2"))
        expected = set()
        if adapters and engine != "vllm":
            expected.add(ADAPTERS_ENGINE_RULE.message)
        if adapters and trn2:
            expected.add(ADAPTERS_TRN2_RULE.message)
        if engine != "vllm" and trn2:
            expected.add("trn2 instances need engine vllm (TGI and DJL-LMI support inf2 and trn1 only)")
        assert set(failed_rules(obj)) == expected, (engine, instance, adapters)
        outcomes.add(frozenset(expected))
    assert frozenset() in outcomes and frozenset({ADAPTERS_TRN2_RULE.message}) in outcomes


def test_an_adapter_may_not_shadow_the_served_model_name() -> None:
    named = {"source": "hf://org/base", "servedModelName": "sql"}
    assert failed_rules(md(model=named, adapters=[ADAPTER])) == [ADAPTER_MODEL_NAME_RULE.message]
    assert failed_rules(md(model={**named, "servedModelName": "base"}, adapters=[ADAPTER])) == []
    assert failed_rules(md(model=named)) == [], "no adapters: nothing to shadow"
