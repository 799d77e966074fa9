"""The pydantic models refuse what the CRDs refuse (issue "Hardening", item 6).

The operator validates every object it reads with the API models; the API server validates writes with the CRDs
generated from them. When the schema is bypassed (an older CRD still installed, a direct etcd write) only the
models stand between a spec and the cluster, so both must agree. Covers: every `x-kubernetes-validations` rule in
the three generated CRDs has objects it refuses here (a new rule without cases fails), and each is refused by the
model too, at the rule's place and with the rule's own message (a new rule without a model check fails); over
whole products of the fields each rule reads (every instance x tensor-parallel degree, replica bounds, engine x
dtype x KV cache x prefix caching, engine x instance, tier kinds, defaultMaxTier and modelName, cache backends,
embedding kinds, mode x semantic) the model and CEL give the same verdict; the harness itself catches a model
that carries a rule but does not check it; list-map keys (tier names) are unique in the model too; the CRD gets no
validation keyword that pydantic does not enforce (nothing but defaults and x-kubernetes-* through
json_schema_extra); types are as strict as the schema's ("2" is not an integer); the unit tier's table of objects
the ModelDeployment schema refuses is refused by the model at the same path.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from neuroscale.api.crds import crd
from neuroscale.api.registry import CACHE_TIER, INFERENCE_CASCADE, KINDS, MODEL_DEPLOYMENT
from neuroscale.api.schema import ApiModel, Rule, crd_rules, structural_schema
from neuroscale.sizing import CATALOG
from tests.support.crd_schema import CrdSchema, openapi_schema
from tests.support.factories import make_cache_tier, make_inference_cascade, make_model_deployment
from tests.unit.test_crd_modeldeployment import SCHEMA_INVALID as MD_SCHEMA_INVALID

SCHEMAS = {kind.kind: CrdSchema(openapi_schema(crd(kind))) for kind in KINDS}
MODELS: dict[str, type[BaseModel]] = {kind.kind: kind.spec for kind in KINDS}
ENGINES = ("vllm", "tgi", "djl-lmi")

TP = "tensorParallelDegree is not supported on this instance type"
REPLICAS = "minReplicas must not exceed maxReplicas"
ENGINE_FEATURES = "fp8/int8 weights, an fp8 KV cache and prefix caching need engine vllm"
SCALE_TO_ZERO = "minReplicas 0 (scale to zero) needs autoscaling enabled"
TRN2 = "trn2 instances need engine vllm (TGI and DJL-LMI support inf2 and trn1 only)"
ONE_KIND = "set exactly one of modelDeployment, openai, bedrock or sagemaker"
DEFAULT_MAX_TIER = "escalation.defaultMaxTier must name one of the tiers"
MODEL_NAME = "modelName must differ from every tier name"
ONE_BACKEND = "set exactly one of inCluster or external"
OPENAI_EMBEDDING = "embedding kind openai needs url"
BEDROCK_EMBEDDING = "embedding kind bedrock needs model (a Titan model id) and region"
SEMANTIC_ONLY = "semantic settings apply only to mode semantic"
TRUSTED_HEADER = "auth mode trustedHeader needs auth.trustedHeader"
PROXY_PROOF = ("trustedHeader needs proxyCidrs or sharedSecretHeader with sharedSecretRef: otherwise any client "
               "names any tenant")
SPECULATION_ENGINE = "speculativeDecoding needs engine vllm"
EAGLE_TRN2 = ("method eagle (EAGLE v1) runs on the NxD Inference image (inf2, trn1); the vLLM Neuron plugin on trn2 "
              "takes method eagle3 only")
DRAFT_METHOD = ("method draft is not supported: the Neuron vLLM images serve a separate draft model only on the legacy "
                "vLLM v0 fork (Neuron SDK 2.26); use an EAGLE head with method eagle (inf2, trn1) or eagle3")
DRAFT_REVISION = "a draftModel revision applies to hf:// sources only"
ADAPTER_REVISION = "an adapter's revision applies to hf:// sources only"
ADAPTERS_ENGINE = "adapters need engine vllm"
ADAPTERS_TRN2 = ("adapters run on the NxD Inference image (inf2, trn1); the vLLM Neuron plugin on trn2 documents no "
                 "LoRA serving")
ADAPTER_MODEL_NAME = "an adapter name must differ from model.servedModelName"


def md(**spec: Any) -> dict[str, Any]:
    return make_model_deployment(**spec)


def ic(**spec: Any) -> dict[str, Any]:
    return make_inference_cascade(**spec)


def ct(**spec: Any) -> dict[str, Any]:
    obj = make_cache_tier()
    obj["spec"].update(spec)  # whole fields replaced: the factory's backend must be replaceable by {}
    return obj


SMALL = {"name": "small", "modelDeployment": {"name": "llama"}}
BEDROCK = {"name": "large", "bedrock": {"modelId": "anthropic.claude", "region": "us-east-1"}}
TIER_MEMBERS = {"modelDeployment": {"name": "llama"}, "openai": {"url": "https://llm.example.com/v1", "model": "m"},
                "bedrock": {"modelId": "m", "region": "us-east-1"},
                "sagemaker": {"endpointName": "lmi", "region": "us-west-2"}}
SEMANTIC = {"mode": "semantic"}

# Objects each CEL rule refuses (and nothing else in the schema does), by the rule's message.
REFUSED: dict[str, list[dict[str, Any]]] = {
    TP: [md(accelerator={"instanceType": "inf2.xlarge", "tensorParallelDegree": 8}),
         md(accelerator={"instanceType": "trn1.32xlarge", "tensorParallelDegree": 24})],
    REPLICAS: [md(autoscaling={"minReplicas": 5, "maxReplicas": 2}),
               md(autoscaling={"minReplicas": 5}),  # against the defaulted maxReplicas (4)
               md(autoscaling={"minReplicas": 2, "maxReplicas": 1, "enabled": False})],
    SCALE_TO_ZERO: [md(autoscaling={"minReplicas": 0, "enabled": False})],
    ENGINE_FEATURES: [md(engine={"name": "tgi"}, model={"dtype": "fp8"}),
                      md(engine={"name": "djl-lmi", "prefixCaching": True}),
                      md(engine={"name": "tgi"}, model={"kvCacheDtype": "fp8"}),
                      md(engine={"name": "tgi"}, model={"dtype": "int8"})],
    TRN2: [md(engine={"name": "tgi"}, accelerator={"instanceType": "trn2.48xlarge", "families": []}),
           md(engine={"name": "djl-lmi"}, accelerator={"instanceType": "trn2.48xlarge", "families": ["inf2"]})],
    ONE_KIND: [ic(tiers=[SMALL, {"name": "large"}]), ic(tiers=[{**SMALL, "bedrock": BEDROCK["bedrock"]}])],
    DEFAULT_MAX_TIER: [ic(escalation={"defaultMaxTier": "huge"})],
    MODEL_NAME: [ic(modelName="small"), ic(modelName="large")],
    ONE_BACKEND: [ct(backend={}), ct(backend={"inCluster": {}, "external": {"url": "redis://r:6379/0"}})],
    OPENAI_EMBEDDING: [ct(**SEMANTIC, semantic={"embedding": {"kind": "openai"}})],
    BEDROCK_EMBEDDING: [ct(**SEMANTIC, semantic={"embedding": {"kind": "bedrock", "region": "us-east-1"}}),
                        ct(**SEMANTIC, semantic={"embedding": {"kind": "bedrock", "model": "amazon.titan-embed"}})],
    SEMANTIC_ONLY: [ct(semantic={"similarityThreshold": 0.9}), ct(mode="exact", semantic={})],
    TRUSTED_HEADER: [ic(auth={"mode": "trustedHeader"})],
    PROXY_PROOF: [ic(auth={"mode": "trustedHeader", "trustedHeader": {"header": "x-tenant"}}),
                  ic(auth={"mode": "trustedHeader", "trustedHeader": {"header": "x-tenant", "proxyCidrs": []}}),
                  ic(auth={"mode": "trustedHeader",
                           "trustedHeader": {"header": "x-tenant", "sharedSecretHeader": "x-proxy-secret"}})],
}
EAGLE = {"method": "eagle", "draftModel": {"source": "hf://org/eagle-head"}}
EAGLE3 = {"method": "eagle3", "draftModel": {"source": "hf://org/eagle3-head"}}
ADAPTER = {"name": "sql", "source": "hf://org/sql-lora"}
TRN2_PINNED = {"instanceType": "trn2.48xlarge", "families": []}
REFUSED |= {
    SPECULATION_ENGINE: [md(engine={"name": "tgi"}, speculativeDecoding=EAGLE3),
                         md(engine={"name": "djl-lmi"}, speculativeDecoding=EAGLE)],
    EAGLE_TRN2: [md(speculativeDecoding=EAGLE, accelerator=TRN2_PINNED)],
    DRAFT_METHOD: [md(speculativeDecoding={**EAGLE, "method": "draft"})],
    DRAFT_REVISION: [md(speculativeDecoding={**EAGLE3, "draftModel": {"source": "s3://bucket/head",
                                                                       "revision": "main"}})],
    ADAPTER_REVISION: [md(adapters=[{**ADAPTER, "source": "s3://bucket/sql", "revision": "v1"}])],
    ADAPTERS_ENGINE: [md(engine={"name": "tgi"}, adapters=[ADAPTER])],
    ADAPTERS_TRN2: [md(adapters=[ADAPTER], accelerator=TRN2_PINNED)],
    ADAPTER_MODEL_NAME: [md(model={"source": "hf://org/base", "servedModelName": "sql"}, adapters=[ADAPTER])],
}
CASES = [(message, obj) for message, objects in REFUSED.items() for obj in objects]


def all_rules() -> Iterator[tuple[str, Any]]:
    for kind, schema in SCHEMAS.items():
        for rule in schema.rules():
            yield kind, rule


def model_errors(model: type[BaseModel], spec: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        model.model_validate(spec)
    except ValidationError as error:
        return error.errors()
    return []


def schema_path(loc: tuple[Any, ...]) -> str:
    """An error's location the way a CRD rule's location is written: `spec.tiers[]`, `spec.autoscaling`."""
    return "spec" + "".join("[]" if isinstance(p, int) else f".{to_camel(p)}" for p in loc)


def rule_messages() -> set[str]:
    return {rule.message for _, rule in all_rules()}


def model_rule_verdict(kind: str, obj: dict[str, Any]) -> set[str]:
    """Messages of CRD rules the model gives for `obj` (other model errors would be a broken case)."""
    errors = model_errors(MODELS[kind], obj["spec"])
    messages = {e["msg"] for e in errors}
    assert messages <= rule_messages(), f"the model refused for a reason no CRD rule has: {messages}"
    return messages


def cel_verdict(kind: str, obj: dict[str, Any]) -> set[str]:
    schema = SCHEMAS[kind]
    assert schema.errors(schema.defaulted(obj)) == [], "the case must pass the OpenAPI schema: only CEL judges it"
    return {v.rule.message for v in schema.violations(obj)}


def test_the_three_crds_have_rules() -> None:
    kinds = {kind for kind, _ in all_rules()}
    assert kinds == {MODEL_DEPLOYMENT.kind, INFERENCE_CASCADE.kind, CACHE_TIER.kind}


def test_every_cel_rule_in_the_crds_has_refused_cases() -> None:
    found = [f"{kind} {rule.location}: {rule.message}" for kind, rule in all_rules()]
    missing = [line for line in found if line.split(": ", 1)[1] not in REFUSED]
    assert not missing, "CEL rules with no refused object here (add cases to REFUSED):\n" + "\n".join(missing)
    assert set(REFUSED) <= rule_messages(), "REFUSED names a rule that no CRD has any more"
    assert len({rule.message for _, rule in all_rules()}) == len(found), "two rules share a message"


@pytest.mark.parametrize("message, obj", CASES, ids=[f"{m[:40]}-{i}" for i, (m, _) in enumerate(CASES)])
def test_what_a_cel_rule_refuses_the_model_refuses_with_the_same_message(message: str, obj: dict[str, Any]) -> None:
    kind = obj["kind"]
    assert message in cel_verdict(kind, obj), "the case does not break the rule it is listed under"
    (rule,) = [rule for k, rule in all_rules() if k == kind and rule.message == message]
    errors = model_errors(MODELS[kind], obj["spec"])
    matching = [e for e in errors if e["msg"] == message]
    assert matching, f"the model admits what the CRD rule refuses ({rule.location}: {message}); errors: {errors}"
    assert {schema_path(e["loc"]) for e in matching} == {rule.location}


# --- whole products: the same verdict everywhere ------------------------------------------------------------------


def md_products() -> Iterator[dict[str, Any]]:
    for instance, degree in itertools.product(CATALOG, range(1, 65)):
        yield md(accelerator={"instanceType": instance, "tensorParallelDegree": degree, "families": []})
    for low, high in itertools.product(range(1, 7), repeat=2):
        yield md(autoscaling={"minReplicas": low, "maxReplicas": high})
    for engine, dtype, kv, prefix in itertools.product(ENGINES, ("bf16", "fp16", "fp8", "int8"), ("auto", "fp8"),
                                                       (False, True)):
        yield md(engine={"name": engine, "prefixCaching": prefix}, model={"dtype": dtype, "kvCacheDtype": kv})
    for engine, instance in itertools.product(ENGINES, [None, *CATALOG]):
        pinned = {"instanceType": instance} if instance else {}
        yield md(engine={"name": engine}, accelerator={"families": [], **pinned})


def ic_products() -> Iterator[dict[str, Any]]:
    for chosen in itertools.product((False, True), repeat=len(TIER_MEMBERS)):
        members = {k: v for (k, v), on in zip(TIER_MEMBERS.items(), chosen) if on}
        yield ic(tiers=[SMALL, {"name": "large", **members}])
    for model_name, max_tier in itertools.product((None, "small", "large", "chat", "x"), (None, "small", "large", "x")):
        spec: dict[str, Any] = {"modelName": model_name} if model_name else {}
        yield ic(**spec, escalation={"defaultMaxTier": max_tier} if max_tier else {})


def ct_products() -> Iterator[dict[str, Any]]:
    backends = [{}, {"inCluster": {}}, {"external": {"url": "redis://r:6379/0"}},
                {"inCluster": {}, "external": {"url": "redis://r:6379/0"}}]
    for backend in backends:
        yield ct(backend=backend)
    for kind, url, model, region in itertools.product(("local", "openai", "bedrock"), (None, "http://e/v1"),
                                                       (None, "amazon.titan-embed"), (None, "us-east-1")):
        embedding = {"kind": kind, **{k: v for k, v in (("url", url), ("model", model), ("region", region)) if v}}
        yield ct(mode="semantic", semantic={"embedding": embedding})
    for mode, semantic in itertools.product(("exact", "semantic"), (None, {}, {"similarityThreshold": 0.5})):
        yield ct(mode=mode, **({"semantic": semantic} if semantic is not None else {}))


@pytest.mark.parametrize("products", [md_products, ic_products, ct_products], ids=["ModelDeployment",
                                                                                  "InferenceCascade", "CacheTier"])
def test_the_model_and_cel_agree_over_every_combination(products) -> None:
    disagreements, refused, admitted = [], 0, 0
    for obj in products():
        cel, model = cel_verdict(obj["kind"], obj), model_rule_verdict(obj["kind"], obj)
        # The model stops at its first failing check; CEL reports every rule. Same verdict, messages among CEL's.
        if bool(cel) != bool(model) or not model <= cel:
            disagreements.append(f"{obj['spec']}: CEL {sorted(cel)}, model {sorted(model)}")
        refused += bool(cel)
        admitted += not cel
    assert not disagreements, "\n".join(disagreements[:20])
    assert refused and admitted


# --- the harness catches a missing model check --------------------------------------------------------------------


class _Checked(ApiModel):
    model_config = crd_rules(Rule("self.low <= self.high", "low must not exceed high"))
    low: int = 0
    high: int = 0

    @model_validator(mode="after")
    def _bounds(self) -> _Checked:
        if self.low > self.high:
            raise Rule("self.low <= self.high", "low must not exceed high").refused()
        return self


class _Unchecked(ApiModel):
    model_config = crd_rules(Rule("self.low <= self.high", "low must not exceed high"))
    low: int = 0
    high: int = 0


@pytest.mark.parametrize("model, caught", [(_Checked, False), (_Unchecked, True)])
def test_a_rule_without_a_model_check_is_caught(model: type[BaseModel], caught: bool) -> None:
    schema = CrdSchema({"type": "object", "properties": {"spec": structural_schema(model)}})
    obj = {"spec": {"low": 2, "high": 1}}
    ((rule),) = schema.rules()
    assert [v.rule.message for v in schema.violations(obj)] == [rule.message]
    missed = not any(e["msg"] == rule.message for e in model_errors(model, obj["spec"]))
    assert missed is caught


# --- list-map keys, validation keywords, types ---------------------------------------------------------------------


def list_maps(schema: dict[str, Any], at: str = "spec") -> Iterator[tuple[str, list[str]]]:
    if schema.get("x-kubernetes-list-type") == "map":
        yield at, schema["x-kubernetes-list-map-keys"]
    for key, sub in schema.get("properties", {}).items():
        yield from list_maps(sub, f"{at}.{key}")
    if isinstance(schema.get("items"), dict):
        yield from list_maps(schema["items"], f"{at}[]")


DUPLICATE_KEYS = {
    ("InferenceCascade", "spec.tiers"): (ic(tiers=[SMALL, {**BEDROCK, "name": "small"}]),
                                         "tier names must be unique; more than one tier is named small"),
    ("ModelDeployment", "spec.adapters"): (md(adapters=[ADAPTER, {**ADAPTER, "source": "hf://org/other"}]),
                                           "adapter names must be unique; more than one adapter is named sql"),
}


def test_list_map_keys_are_unique_in_the_model_too() -> None:
    found = {(kind, at) for kind, schema in SCHEMAS.items()
             for at, _ in list_maps(schema.openapi["properties"]["spec"])}
    assert found == set(DUPLICATE_KEYS), "a list-map was added to a spec: give it a duplicate-key case"
    for (kind, _), (obj, message) in DUPLICATE_KEYS.items():
        errors = model_errors(MODELS[kind], obj["spec"])
        assert [e["msg"] for e in errors] == [message]


def spec_models() -> set[type[BaseModel]]:
    """Every model a spec is made of."""
    seen: set[type[BaseModel]] = set()

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in seen:
                seen.add(annotation)
                for field in annotation.model_fields.values():
                    visit(field.annotation)
            return
        for arg in getattr(annotation, "__args__", ()) or ():
            visit(arg)

    for kind in KINDS:
        visit(kind.spec)
    return seen


SCHEMA_ONLY_KEYS = {"default", "x-kubernetes-list-type", "x-kubernetes-list-map-keys",
                    "x-kubernetes-preserve-unknown-fields"}


def test_the_crd_gets_no_validation_keyword_the_model_does_not_enforce() -> None:
    """Patterns, bounds and enums come from pydantic constraints, which pydantic enforces; anything added to the
    schema by hand (json_schema_extra) could say more than the model checks. Rules come only through crd_rules."""
    models = spec_models()
    assert {m.__name__ for m in models} >= {"ModelDeploymentSpec", "CascadeTier", "ExternalRedis", "EmbeddingSpec"}
    extra_keys = {}
    for model in models:
        config_extra = model.model_config.get("json_schema_extra") or {}
        assert set(config_extra) <= {"x-kubernetes-validations"}, (model.__name__, config_extra)
        for name, field in model.model_fields.items():
            keys = set((field.json_schema_extra or {}) if isinstance(field.json_schema_extra, dict) else {})
            if keys - SCHEMA_ONLY_KEYS:
                extra_keys[f"{model.__name__}.{name}"] = sorted(keys - SCHEMA_ONLY_KEYS)
    assert not extra_keys, f"validation only the CRD would enforce: {extra_keys}"


@pytest.mark.parametrize("key", sorted(k for k, (obj, _) in MD_SCHEMA_INVALID.items() if "status" not in obj))
def test_what_the_modeldeployment_schema_refuses_the_model_refuses_at_the_same_path(key: str) -> None:
    obj, path = MD_SCHEMA_INVALID[key]
    errors = model_errors(MODELS["ModelDeployment"], obj["spec"])
    assert errors, f"the model admits {key!r}, which the CRD refuses at {path}"
    paths = {"spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{to_camel(p)}" for p in e["loc"]) for e in errors}
    assert path in paths or (path == "spec" and any(e["type"] == "missing" for e in errors)), (paths, errors)


@pytest.mark.parametrize("kind, spec, path", [
    ("ModelDeployment", {"replicas": "2"}, "spec.replicas"),
    ("ModelDeployment", {"engine": {"prefixCaching": "true"}}, "spec.engine.prefixCaching"),
    ("ModelDeployment", {"engine": {"env": [{"name": "A", "value": 5}]}}, "spec.engine.env[0].value"),
    ("ModelDeployment", {"engine": {"args": ["--x", "a" * 1025]}}, "spec.engine.args[1]"),
    ("InferenceCascade", {"escalation": {"refusalPatterns": ["r" * 513]}}, "spec.escalation.refusalPatterns[0]"),
    ("CacheTier", {"ttlSeconds": "600"}, "spec.ttlSeconds"),
], ids=["int-as-string", "bool-as-string", "number-for-string", "arg-too-long", "pattern-too-long",
        "ttl-as-string"])
def test_types_and_item_bounds_are_the_schemas(kind: str, spec: dict[str, Any], path: str) -> None:
    factory = {"ModelDeployment": md, "InferenceCascade": ic, "CacheTier": make_cache_tier}[kind]
    obj = factory(**spec)
    assert SCHEMAS[kind].errors(SCHEMAS[kind].defaulted(obj)), "the CRD refuses it"
    errors = model_errors(MODELS[kind], obj["spec"])
    paths = {"spec" + "".join(f"[{p}]" if isinstance(p, int) else f".{to_camel(p)}" for p in e["loc"]) for e in errors}
    assert path in paths, errors


def test_numbers_the_schema_admits_the_model_admits() -> None:
    """An integer where a number is asked (JSON has one number type): both admit it."""
    obj = md(autoscaling={"targetTokensPerSecond": 250}, model={"parametersBillions": 8})
    assert SCHEMAS["ModelDeployment"].rejections(obj) == []
    assert model_errors(MODELS["ModelDeployment"], obj["spec"]) == []


