"""The generated ModelDeployment CRD, checked the way an API server would use it.

Covers: valid objects (the factory's, and variants across engines, sources, instances and a full status) pass the
OpenAPI schema (jsonschema) and every CEL rule; objects breaking patterns, enums, ranges, exclusive bounds,
required fields and formats are rejected by the schema at the right path; unknown fields are not rejected (the API
server prunes them); the schema's defaults, applied as the API server applies them, agree with the pydantic
models' defaults; every `x-kubernetes-validations` rule (evaluated with cel-python, `self` bound at the rule's
location, after defaulting) has objects it admits and objects it rejects, alone: tensor parallelism per instance
(every catalog instance x every degree 1..64 against `allowed_tp`), minReplicas <= maxReplicas (including against a
defaulted bound), the engine/dtype/KV-cache/prefix-caching rule and the trn2 engine rule over their full products;
every property has a description; conditions are a list-map keyed by `type`; printer columns and the scale
subresource point at schema paths of the right type. The converter's OpenAPI v3.0 specifics (nullable, boolean
exclusive bounds) are checked on small schemas.
"""

from __future__ import annotations

import itertools
from typing import Any

import jsonschema
import pytest

from neuroscale.api.crds import crd
from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.api.registry import MODEL_DEPLOYMENT
from neuroscale.sizing import CATALOG
from tests.support.crd_schema import (
    CrdSchema,
    openapi_schema,
    properties_without_description,
    schema_at,
    to_json_schema,
)
from tests.support.factories import deep_merge, make_model_deployment
from tests.unit.test_crd_extensions import EXTENSION_RULES

CRD = crd(MODEL_DEPLOYMENT)
SCHEMA = CrdSchema(openapi_schema(CRD))
ENGINES = ("vllm", "tgi", "djl-lmi")
DTYPES = ("bf16", "fp16", "fp8", "int8")

TP_RULE = "tensorParallelDegree is not supported on this instance type"
REPLICAS_RULE = "minReplicas must not exceed maxReplicas"
ENGINE_FEATURES_RULE = "fp8/int8 weights, an fp8 KV cache and prefix caching need engine vllm"
TRN2_RULE = "trn2 instances need engine vllm (TGI and DJL-LMI support inf2 and trn1 only)"
SCALE_TO_ZERO_RULE = "minReplicas 0 (scale to zero) needs autoscaling enabled"


def md(**spec: Any) -> dict[str, Any]:
    return make_model_deployment(**spec)


def with_status(obj: dict[str, Any], **status: Any) -> dict[str, Any]:
    return deep_merge(obj, {"status": status})


def failed_rules(obj: dict[str, Any]) -> list[str]:
    """Messages of the rules rejecting `obj`; a rule that could not evaluate says so rather than pass for a verdict."""
    return [v.rule.message + (f" [{v.detail}]" if v.detail else "") for v in SCHEMA.violations(obj)]


FULL_STATUS = {
    "observedGeneration": 3,
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "Serving", "lastTransitionTime": "2025-01-02T03:04:05Z",
         "observedGeneration": 3},
        {"type": "Sized", "status": "True", "reason": "Sized", "message": "fits", "lastTransitionTime":
            "2025-01-02T03:04:05Z"},
    ],
    "replicas": 2, "readyReplicas": 2, "desiredReplicas": 2, "selector": "neuroscale.io/model-deployment=llama",
    "sizing": {"instanceType": "inf2.8xlarge", "tensorParallelDegree": 2, "neuronDevices": 1, "weightsGiB": 15.0,
               "kvCacheGiB": 1.0, "requiredGiB": 17.5, "capacityGiB": 32, "estimatedTokensPerSecond": 400.0},
    "costPerHour": 3.94, "endpoint": "http://llama.ns1.svc:8000/v1", "servedModelName": "llama",
    "autoscaling": {"observedTokensPerSecond": 120.5, "desiredReplicas": 2, "state": {"anything": [1, {"x": 2}]}},
}

VALID = {
    "factory": md(),
    "s3 weights with compile cache": md(
        model={"source": "s3://my-models/llama-3.1-8b/", "architecture": "llama-3.1-8b"},
        compileCache={"uri": "s3://neuron-cache/llama"},
    ),
    "unknown model by parameter count": md(model={"source": "hf://org/custom", "parametersBillions": 0.5}),
    "autoscaling min == max": md(autoscaling={"minReplicas": 3, "maxReplicas": 3, "targetTokensPerSecond": 250.5}),
    "tgi on trn1 bf16": md(engine={"name": "tgi"}, accelerator={"instanceType": "trn1.32xlarge",
                                                                 "tensorParallelDegree": 32}),
    "djl-lmi fp16": md(engine={"name": "djl-lmi"}, model={"dtype": "fp16"}),
    "vllm trn2 tp64 fp8 everything": md(model={"dtype": "fp8", "kvCacheDtype": "fp8"},
                                        engine={"prefixCaching": True, "args": ["--foo"],
                                                "env": [{"name": "NEURON_RT_LOG", "value": "INFO"}],
                                                "hubTokenSecretRef": {"name": "hf-token"}},
                                        accelerator={"instanceType": "trn2.48xlarge", "tensorParallelDegree": 64}),
    "placement and identity": md(scheduling={"nodeSelector": {"pool": "inf2"},
                                             "tolerations": [{"key": "gpu", "operator": "Exists"}]},
                                 serviceAccount={"roleArn": "arn:aws:iam::123456789012:role/models"},
                                 resources={"cpu": "28", "memory": "100Gi"}, service={"type": "LoadBalancer"}),
    "zero replicas": md(replicas=0),
    "full status": with_status(md(), **FULL_STATUS),
}


@pytest.mark.parametrize("obj", VALID.values(), ids=VALID.keys())
def test_valid_objects_are_admitted(obj: dict[str, Any]) -> None:
    assert SCHEMA.rejections(obj) == []


SCHEMA_INVALID = {
    "unsupported source scheme": (md(model={"source": "gs://bucket/model"}), "spec.model.source"),
    "model missing": ({**md(), "spec": {"replicas": 1}}, "spec"),
    "maxModelLen below range": (md(model={"maxModelLen": 64}), "spec.model.maxModelLen"),
    "parameter count zero (exclusive minimum)": (md(model={"parametersBillions": 0}), "spec.model.parametersBillions"),
    "unknown dtype": (md(model={"dtype": "fp32"}), "spec.model.dtype"),
    "unknown engine": (md(engine={"name": "triton"}), "spec.engine.name"),
    "unknown instance": (md(accelerator={"instanceType": "p5.48xlarge"}), "spec.accelerator.instanceType"),
    "tp above 64": (md(accelerator={"tensorParallelDegree": 65}), "spec.accelerator.tensorParallelDegree"),
    "unknown family": (md(accelerator={"families": ["p5"]}), "spec.accelerator.families[0]"),
    "negative replicas": (md(replicas=-1), "spec.replicas"),
    "replicas as a string": (md(replicas="2"), "spec.replicas"),
    "autoscaling target zero": (md(autoscaling={"targetTokensPerSecond": 0}), "spec.autoscaling.targetTokensPerSecond"),
    "compile cache not s3": (md(compileCache={"uri": "https://example.com/cache"}), "spec.compileCache.uri"),
    "env name with a digit first": (md(engine={"env": [{"name": "1BAD"}]}), "spec.engine.env[0].name"),
    "port out of range": (md(service={"port": 70000}), "spec.service.port"),
    "role arn malformed": (md(serviceAccount={"roleArn": "role/models"}), "spec.serviceAccount.roleArn"),
    "cpu not a quantity": (md(resources={"cpu": "lots"}), "spec.resources.cpu"),
    "condition status not tri-state": (
        with_status(md(), conditions=[{**FULL_STATUS["conditions"][0], "status": "Maybe"}]),
        "status.conditions[0].status"),
    "condition time not RFC 3339": (
        with_status(md(), conditions=[{**FULL_STATUS["conditions"][0], "lastTransitionTime": "yesterday"}]),
        "status.conditions[0].lastTransitionTime"),
}


@pytest.mark.parametrize("obj, path", SCHEMA_INVALID.values(), ids=SCHEMA_INVALID.keys())
def test_schema_rejects_at_the_right_path(obj: dict[str, Any], path: str) -> None:
    errors = SCHEMA.errors(SCHEMA.defaulted(obj))
    assert errors, "the schema admitted it"
    assert {error.split(": ", 1)[0] for error in errors} == {path}, errors


def test_unknown_fields_are_not_rejected_but_pruned_by_the_server() -> None:
    obj = md(model={"quantization": "awq"}, colour="blue")
    assert SCHEMA.rejections(obj) == []


def test_schema_defaults_agree_with_the_models() -> None:
    spec = SCHEMA.defaulted(md(autoscaling={}))["spec"]
    assert spec["engine"] == {"name": "vllm", "prefixCaching": False}
    assert spec["model"]["dtype"] == "bf16" and spec["model"]["kvCacheDtype"] == "auto"
    assert spec["autoscaling"]["minReplicas"] == 1 and spec["autoscaling"]["metrics"] == {}
    assert spec["service"] == {"type": "ClusterIP", "port": 8000}
    wire = ModelDeploymentSpec.model_validate(md(autoscaling={})["spec"]).to_wire()

    def disagreements(defaulted: Any, model: Any, at: str) -> list[str]:
        if isinstance(defaulted, dict):
            return [p for key, value in defaulted.items() for p in disagreements(value, model.get(key), f"{at}.{key}")]
        return [] if defaulted == model else [f"{at}: schema {defaulted!r}, model {model!r}"]

    assert disagreements(spec, wire, "spec") == []


def test_defaults_fill_absent_and_null_fields_but_not_absent_optional_objects() -> None:
    obj = md(engine=None)
    obj["spec"].pop("accelerator")
    spec = SCHEMA.defaulted(obj)["spec"]
    assert spec["engine"]["name"] == "vllm"
    assert spec["accelerator"] == {}
    assert "autoscaling" not in spec and "compileCache" not in spec


def test_every_rule_is_exercised_here() -> None:
    messages = [rule.message for rule in SCHEMA.rules()]
    assert len(messages) == len(set(messages)), "two rules share a message; users could not tell them apart"
    assert set(messages) == {TP_RULE, REPLICAS_RULE, ENGINE_FEATURES_RULE, TRN2_RULE, SCALE_TO_ZERO_RULE,
                             *EXTENSION_RULES}, (
        "a CEL rule was added or removed: give it admitted and rejected cases below (or in test_crd_extensions.py)")
    assert {rule.message: rule.location for rule in SCHEMA.rules()} == {
        TP_RULE: "spec.accelerator", REPLICAS_RULE: "spec.autoscaling", SCALE_TO_ZERO_RULE: "spec.autoscaling",
        ENGINE_FEATURES_RULE: "spec", TRN2_RULE: "spec", **EXTENSION_RULES,
    }


def test_instance_enum_is_the_catalog() -> None:
    accelerator = SCHEMA.openapi["properties"]["spec"]["properties"]["accelerator"]
    assert accelerator["properties"]["instanceType"]["enum"] == list(CATALOG)


@pytest.mark.parametrize("instance", list(CATALOG))
def test_tensor_parallel_rule_matches_the_catalog_for_every_degree(instance: str) -> None:
    verdicts = {}
    for degree in range(1, 65):
        obj = md(accelerator={"instanceType": instance, "tensorParallelDegree": degree})
        assert SCHEMA.errors(SCHEMA.defaulted(obj)) == []
        failed = failed_rules(obj)
        assert failed in ([], [TP_RULE]), failed
        verdicts[degree] = not failed
    assert verdicts == {degree: degree in CATALOG[instance].allowed_tp for degree in range(1, 65)}


def test_tensor_parallel_rule_waits_for_both_fields() -> None:
    assert failed_rules(md(accelerator={"tensorParallelDegree": 3})) == []
    assert failed_rules(md(accelerator={"instanceType": "inf2.xlarge"})) == []
    assert failed_rules(md(accelerator={"instanceType": "inf2.xlarge", "tensorParallelDegree": 3})) == [TP_RULE]


def test_replica_bounds_rule() -> None:
    outcomes = set()
    for low, high in itertools.product(range(1, 7), repeat=2):
        failed = failed_rules(md(autoscaling={"minReplicas": low, "maxReplicas": high}))
        assert failed == ([REPLICAS_RULE] if low > high else []), (low, high, failed)
        outcomes.add(bool(failed))
    assert outcomes == {True, False}


def test_replica_bounds_rule_sees_defaults() -> None:
    # maxReplicas defaults to 4: a minimum of 5 alone must be refused, and a minimum of 4 alone admitted.
    assert failed_rules(md(autoscaling={"minReplicas": 5})) == [REPLICAS_RULE]
    assert failed_rules(md(autoscaling={"minReplicas": 4})) == []
    assert failed_rules(md(autoscaling={"maxReplicas": 1, "enabled": False})) == []
    assert failed_rules(md()) == [], "no autoscaling block: the rule has nothing to run on"


def test_scale_to_zero_rule_needs_autoscaling_on() -> None:
    assert failed_rules(md(autoscaling={"minReplicas": 0})) == [], "enabled defaults to true"
    assert failed_rules(md(autoscaling={"minReplicas": 0, "enabled": True})) == []
    assert failed_rules(md(autoscaling={"minReplicas": 0, "enabled": False})) == [SCALE_TO_ZERO_RULE]
    assert failed_rules(md(autoscaling={"minReplicas": 1, "enabled": False})) == []
    assert SCHEMA.errors(SCHEMA.defaulted(md(autoscaling={"minReplicas": 0}))) == []
    assert SCHEMA.errors(SCHEMA.defaulted(md(autoscaling={"minReplicas": -1}))) != []


def test_engine_features_rule_over_every_combination() -> None:
    outcomes = set()
    for engine, dtype, kv, prefix in itertools.product(ENGINES, DTYPES, ("auto", "fp8"), (False, True)):
        obj = md(engine={"name": engine, "prefixCaching": prefix}, model={"dtype": dtype, "kvCacheDtype": kv})
        assert SCHEMA.errors(SCHEMA.defaulted(obj)) == []
        needs_vllm = dtype in ("fp8", "int8") or kv == "fp8" or prefix
        expected = [ENGINE_FEATURES_RULE] if needs_vllm and engine != "vllm" else []
        assert failed_rules(obj) == expected, (engine, dtype, kv, prefix)
        outcomes.add(bool(expected))
    assert outcomes == {True, False}


def test_trn2_engine_rule_over_every_engine_and_instance() -> None:
    outcomes = set()
    for engine, instance in itertools.product(ENGINES, [None, *CATALOG]):
        accelerator = {"instanceType": instance} if instance else {}
        expected = [TRN2_RULE] if engine != "vllm" and instance and instance.startswith("trn2") else []
        assert failed_rules(md(engine={"name": engine}, accelerator=accelerator)) == expected, (engine, instance)
        outcomes.add(bool(expected))
    assert outcomes == {True, False}


def test_every_property_is_described() -> None:
    assert SCHEMA.openapi.get("description"), "the kind itself needs a description"
    assert properties_without_description(SCHEMA.openapi) == [], "kubectl explain would show these bare"


def test_description_walk_finds_a_bare_property() -> None:
    bare = deep_merge(SCHEMA.openapi, {"properties": {"spec": {"properties": {"model": {"properties": {
        "extra": {"type": "string"}}}}}}})
    assert properties_without_description(bare) == ["spec.model.extra"]


def test_conditions_are_a_list_map_keyed_by_type() -> None:
    conditions = schema_at(SCHEMA.openapi, ".status.conditions")
    assert conditions is not None and conditions["type"] == "array"
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    # A list-map key must be required (or defaulted) in every item, or the server cannot merge the list.
    assert "type" in conditions["items"]["required"]


COLUMN_TYPES = {"integer": {"integer"}, "number": {"number", "integer"}, "string": {"string"}, "boolean": {"boolean"},
                "date": {"string"}}


@pytest.mark.parametrize("column", CRD["spec"]["versions"][0]["additionalPrinterColumns"], ids=lambda c: c["name"])
def test_printer_columns_point_at_schema_paths_of_their_type(column: dict[str, Any]) -> None:
    target = schema_at(SCHEMA.openapi, column["jsonPath"])
    assert target is not None, f"{column['name']}: {column['jsonPath']} is not in the schema"
    if not column["jsonPath"].startswith(".metadata."):
        assert target.get("type") in COLUMN_TYPES[column["type"]], (column, target.get("type"))


def test_path_lookup_rejects_paths_that_do_not_exist() -> None:
    assert schema_at(SCHEMA.openapi, ".status.readyReplica") is None
    assert schema_at(SCHEMA.openapi, ".metadata.nickname") is None
    assert schema_at(SCHEMA.openapi, ".spec.replicas[0]") is None
    assert schema_at(SCHEMA.openapi, ".status.conditions[?(@.type==\"Ready\")].reason")["type"] == "string"


def test_scale_subresource_paths_exist() -> None:
    subresources = CRD["spec"]["versions"][0]["subresources"]
    assert "status" in subresources
    scale = subresources["scale"]
    assert scale["specReplicasPath"].startswith(".spec.")
    assert scale["statusReplicasPath"].startswith(".status.")
    assert scale["labelSelectorPath"].startswith((".spec.", ".status."))
    assert schema_at(SCHEMA.openapi, scale["specReplicasPath"])["type"] == "integer"
    assert schema_at(SCHEMA.openapi, scale["statusReplicasPath"])["type"] == "integer"
    assert schema_at(SCHEMA.openapi, scale["labelSelectorPath"])["type"] == "string"


def test_converter_keeps_openapi_v3_0_meaning() -> None:
    exclusive = jsonschema.Draft202012Validator(
        to_json_schema({"type": "number", "minimum": 0, "exclusiveMinimum": True})
    )
    assert not exclusive.is_valid(0) and exclusive.is_valid(0.001)
    inclusive = jsonschema.Draft202012Validator(to_json_schema({"type": "number", "minimum": 0}))
    assert inclusive.is_valid(0)
    nullable = jsonschema.Draft202012Validator(to_json_schema({"type": "string", "nullable": True}))
    assert nullable.is_valid(None) and nullable.is_valid("x") and not nullable.is_valid(1)
    strict = jsonschema.Draft202012Validator(to_json_schema({"type": "string"}))
    assert not strict.is_valid(None)
    int_or_string = jsonschema.Draft202012Validator(to_json_schema({"x-kubernetes-int-or-string": True}))
    assert int_or_string.is_valid(3) and int_or_string.is_valid("50%") and not int_or_string.is_valid(1.5)
