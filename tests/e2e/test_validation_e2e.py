"""Every validation rule of the three CRDs fires on the real API server, with the message users see.

The unit tier (tests/unit/test_crd_modeldeployment.py, tests/unit/test_cascade_crd.py) judges objects with
jsonschema and cel-python (tests/support/crd_schema.py), a model of what the API server does. Here one table of
invalid ModelDeployments, InferenceCascades and CacheTiers goes to a real kube-apiserver: each must be refused with
422 and the expected message (schema patterns, enums, ranges, exclusive bounds, item counts, required fields,
list-map key uniqueness, and every `x-kubernetes-validations` rule in crds/*.yaml; a check fails when a CEL rule
has no row). Status rows are written through the status subresource, since a create drops status.
The same table is held against the unit tier's model: an object the server refuses but the model admits is a gap
in the unit tier. Valid objects (the unit tier's and the factories') and every neuroscale object in examples/ are
admitted by a server-side dry run, and the server's defaulting agrees with the unit tier's.

The ModelDeployment schema rows are the unit tier's own `SCHEMA_INVALID` table, imported and paired with the
server's answer; the InferenceCascade and CacheTier cases of the unit tier are inline `parametrize` lists of
fragments (not whole objects), so the rows for those kinds are built here from the factories.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from neuroscale.api.adapters import (
    ADAPTER_MODEL_NAME_RULE,
    ADAPTER_REVISION_RULE,
    ADAPTERS_ENGINE_RULE,
    ADAPTERS_TRN2_RULE,
)
from neuroscale.api.speculative_decoding import (
    DRAFT_METHOD_RULE,
    DRAFT_REVISION_RULE,
    EAGLE_TRN2_RULE,
    SPECULATION_ENGINE_RULE,
)
from tests.e2e.cluster import throwaway_namespace
from tests.support.crd_schema import CrdSchema, openapi_schema
from tests.support.factories import deep_merge, make_cache_tier, make_inference_cascade, make_model_deployment
from tests.unit.test_crd_modeldeployment import SCHEMA_INVALID as UNIT_MD_SCHEMA_INVALID
from tests.unit.test_crd_modeldeployment import VALID as UNIT_MD_VALID

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "neuroscale.io", "v1alpha1"
CRDS = {doc["spec"]["names"]["kind"]: doc
        for path in sorted((ROOT / "crds").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc}
PLURALS = {kind: crd["spec"]["names"]["plural"] for kind, crd in CRDS.items()}
SCHEMAS = {kind: CrdSchema(openapi_schema(crd)) for kind, crd in CRDS.items()}
OUR_KINDS = frozenset(CRDS)


@dataclass(frozen=True)
class Invalid:
    """One object the API server must refuse: 422 and `message` (a substring of the Status message)."""

    id: str
    obj: dict[str, Any]
    message: str
    via: str = "create"  # "status": created valid, then the status subresource is written

    @property
    def kind(self) -> str:
        return self.obj["kind"]


def md(**spec: Any) -> dict[str, Any]:
    return make_model_deployment(**spec)


def ic(**spec: Any) -> dict[str, Any]:
    return make_inference_cascade(**spec)


def ct(**spec: Any) -> dict[str, Any]:
    return make_cache_tier(**spec)


def with_spec(obj: dict[str, Any], **replaced: Any) -> dict[str, Any]:
    """`obj` with whole spec fields replaced (the factories deep-merge, which cannot take a key away)."""
    obj = copy.deepcopy(obj)
    obj["spec"].update(replaced)
    return obj


def without(obj: dict[str, Any], *path: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    node = obj
    for step in path[:-1]:
        node = node[step]
    del node[path[-1]]
    return obj


# --- ModelDeployment ---------------------------------------------------------------------------------------------

TP_RULE = "tensorParallelDegree is not supported on this instance type"
REPLICAS_RULE = "minReplicas must not exceed maxReplicas"
SCALE_TO_ZERO_RULE = "minReplicas 0 (scale to zero) needs autoscaling enabled"
ENGINE_FEATURES_RULE = "fp8/int8 weights, an fp8 KV cache and prefix caching need engine vllm"
TRN2_RULE = "trn2 instances need engine vllm (TGI and DJL-LMI support inf2 and trn1 only)"

# The server's answer to each row of the unit tier's SCHEMA_INVALID table (which names only the failing path).
UNIT_MD_SERVER_MESSAGES = {
    "unsupported source scheme":
        'spec.model.source: Invalid value: "gs://bucket/model": spec.model.source in body should match',
    "model missing": "spec.model: Required value",
    "maxModelLen below range":
        "spec.model.maxModelLen: Invalid value: 64: spec.model.maxModelLen in body should be greater than or equal to 128",
    "parameter count zero (exclusive minimum)":
        "spec.model.parametersBillions: Invalid value: 0: spec.model.parametersBillions in body should be greater than 0",
    "unknown dtype": 'spec.model.dtype: Unsupported value: "fp32": supported values: "bf16", "fp16", "fp8", "int8"',
    "unknown engine": 'spec.engine.name: Unsupported value: "triton": supported values: "vllm", "tgi", "djl-lmi"',
    "unknown instance": 'spec.accelerator.instanceType: Unsupported value: "p5.48xlarge": supported values: '
                        '"inf2.xlarge", "inf2.8xlarge", "inf2.24xlarge", "inf2.48xlarge", "trn1.2xlarge", '
                        '"trn1.32xlarge", "trn1n.32xlarge", "trn2.48xlarge"',
    "tp above 64": "spec.accelerator.tensorParallelDegree: Invalid value: 65: "
                   "spec.accelerator.tensorParallelDegree in body should be less than or equal to 64",
    "unknown family": 'spec.accelerator.families[0]: Unsupported value: "p5": supported values: '
                      '"inf2", "trn1", "trn1n", "trn2"',
    "negative replicas": "spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0",
    "replicas as a string": 'spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer',
    "autoscaling target zero": "spec.autoscaling.targetTokensPerSecond: Invalid value: 0: "
                               "spec.autoscaling.targetTokensPerSecond in body should be greater than 0",
    "compile cache not s3": 'spec.compileCache.uri: Invalid value: "https://example.com/cache": '
                            "spec.compileCache.uri in body should match",
    "env name with a digit first":
        'spec.engine.env[0].name: Invalid value: "1BAD": spec.engine.env[0].name in body should match',
    "port out of range":
        "spec.service.port: Invalid value: 70000: spec.service.port in body should be less than or equal to 65535",
    "role arn malformed":
        'spec.serviceAccount.roleArn: Invalid value: "role/models": spec.serviceAccount.roleArn in body should match',
    "cpu not a quantity": 'spec.resources.cpu: Invalid value: "lots": spec.resources.cpu in body should match',
    "condition status not tri-state":
        'status.conditions[0].status: Unsupported value: "Maybe": supported values: "True", "False", "Unknown"',
    "condition time not RFC 3339": 'status.conditions[0].lastTransitionTime: Invalid value: "yesterday": '
                                   "conditions[0].lastTransitionTime in body must be of type date-time",
}

MODEL_DEPLOYMENT_ROWS = [
    *(Invalid(f"unit: {key}", obj, UNIT_MD_SERVER_MESSAGES[key], via="status" if "status" in obj else "create")
      for key, (obj, _path) in UNIT_MD_SCHEMA_INVALID.items() if key in UNIT_MD_SERVER_MESSAGES),
    Invalid("md: no spec at all", without(md(), "spec"), "spec: Required value"),
    Invalid("md: tp 8 on inf2.xlarge", md(accelerator={"instanceType": "inf2.xlarge", "tensorParallelDegree": 8}),
            f'spec.accelerator: Invalid value: {TP_RULE}'),
    Invalid("md: tp 24 on trn1.32xlarge", md(accelerator={"instanceType": "trn1.32xlarge", "tensorParallelDegree": 24}),
            f'spec.accelerator: Invalid value: {TP_RULE}'),
    Invalid("md: minReplicas above maxReplicas", md(autoscaling={"minReplicas": 4, "maxReplicas": 2}),
            f'spec.autoscaling: Invalid value: {REPLICAS_RULE}'),
    Invalid("md: minReplicas above the defaulted maxReplicas", md(autoscaling={"minReplicas": 5}),
            f'spec.autoscaling: Invalid value: {REPLICAS_RULE}'),
    Invalid("md: minReplicas 0 with autoscaling off", md(autoscaling={"minReplicas": 0, "enabled": False}),
            f'spec.autoscaling: Invalid value: {SCALE_TO_ZERO_RULE}'),
    Invalid("md: tgi with fp8 weights", md(engine={"name": "tgi"}, model={"dtype": "fp8"}),
            f'spec: Invalid value: {ENGINE_FEATURES_RULE}'),
    Invalid("md: djl-lmi with prefix caching", md(engine={"name": "djl-lmi", "prefixCaching": True}),
            f'spec: Invalid value: {ENGINE_FEATURES_RULE}'),
    Invalid("md: tgi with an fp8 kv cache", md(engine={"name": "tgi"}, model={"kvCacheDtype": "fp8"}),
            f'spec: Invalid value: {ENGINE_FEATURES_RULE}'),
    Invalid("md: tgi on trn2", md(engine={"name": "tgi"}, accelerator={"instanceType": "trn2.48xlarge"}),
            f'spec: Invalid value: {TRN2_RULE}'),
    Invalid("md: unknown kv cache dtype", md(model={"kvCacheDtype": "int4"}),
            'spec.model.kvCacheDtype: Unsupported value: "int4": supported values: "auto", "fp8"'),
    Invalid("md: hub token secret without a name", md(engine={"hubTokenSecretRef": {"key": "token"}}),
            "spec.engine.hubTokenSecretRef.name: Required value"),
    Invalid("md: service account name not a DNS label", md(serviceAccount={"name": "Models_SA"}),
            'spec.serviceAccount.name: Invalid value: "Models_SA": spec.serviceAccount.name in body should match'),
    Invalid("md: unknown toleration operator", md(scheduling={"tolerations": [{"key": "a", "operator": "In"}]}),
            'spec.scheduling.tolerations[0].operator: Unsupported value: "In": supported values: "Exists", "Equal"'),
    Invalid("md: maxNumSeqs above 256", md(batching={"maxNumSeqs": 512}),
            "spec.batching.maxNumSeqs: Invalid value: 512: spec.batching.maxNumSeqs in body should be less than or "
            "equal to 256"),
    Invalid("md: more than four families",
            md(accelerator={"families": ["inf2", "trn1", "trn1n", "trn2", "inf2"]}),
            "spec.accelerator.families: Too many: 5: must have at most 4 items"),
    Invalid("md: prometheus url not http", md(autoscaling={"metrics": {"prometheusUrl": "prometheus:9090"}}),
            'spec.autoscaling.metrics.prometheusUrl: Invalid value: "prometheus:9090": '
            "spec.autoscaling.metrics.prometheusUrl in body should match '^https?://"),
    Invalid("md: two Ready conditions in status",
            deep_merge(md(), {"status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "Serving", "lastTransitionTime": "2025-01-02T03:04:05Z"},
                {"type": "Ready", "status": "False", "reason": "Waiting", "lastTransitionTime": "2025-01-02T03:04:05Z"},
            ]}}),
            'status.conditions[1]: Duplicate value: {"type":"Ready"}', via="status"),
    Invalid("md: source longer than 512", md(model={"source": "hf://org/" + "m" * 520}),
            "spec.model.source: Too long: may not be more than 512 bytes"),
]

EAGLE3 = {"method": "eagle3", "draftModel": {"source": "hf://org/eagle3-head"}}
ADAPTER = {"name": "sql", "source": "hf://org/sql-lora"}
TRN2 = {"instanceType": "trn2.48xlarge", "families": []}
# Speculative decoding and LoRA adapters (tests/unit/test_crd_extensions.py is the unit tier's side).
MODEL_DEPLOYMENT_ROWS += [
    Invalid("md: speculative decoding on tgi", md(engine={"name": "tgi"}, speculativeDecoding=EAGLE3),
            f"spec: Invalid value: {SPECULATION_ENGINE_RULE.message}"),
    Invalid("md: eagle v1 pinned to trn2", md(accelerator=TRN2, speculativeDecoding={**EAGLE3, "method": "eagle"}),
            f"spec: Invalid value: {EAGLE_TRN2_RULE.message}"),
    Invalid("md: a separate draft model", md(speculativeDecoding={**EAGLE3, "method": "draft"}),
            f"spec.speculativeDecoding: Invalid value: {DRAFT_METHOD_RULE.message}"),
    Invalid("md: a revision on an s3 head",
            md(speculativeDecoding={**EAGLE3, "draftModel": {"source": "s3://heads/h", "revision": "main"}}),
            f"spec.speculativeDecoding.draftModel: Invalid value: {DRAFT_REVISION_RULE.message}"),
    Invalid("md: 17 speculative tokens", md(speculativeDecoding={**EAGLE3, "numSpeculativeTokens": 17}),
            "spec.speculativeDecoding.numSpeculativeTokens: Invalid value: 17: "
            "spec.speculativeDecoding.numSpeculativeTokens in body should be less than or equal to 16"),
    Invalid("md: adapters on djl-lmi", md(engine={"name": "djl-lmi"}, adapters=[ADAPTER]),
            f"spec: Invalid value: {ADAPTERS_ENGINE_RULE.message}"),
    Invalid("md: adapters pinned to trn2", md(accelerator=TRN2, adapters=[ADAPTER]),
            f"spec: Invalid value: {ADAPTERS_TRN2_RULE.message}"),
    Invalid("md: an adapter named like the model",
            md(model={"source": "hf://org/base", "servedModelName": "sql"}, adapters=[ADAPTER]),
            f"spec: Invalid value: {ADAPTER_MODEL_NAME_RULE.message}"),
    Invalid("md: a revision on an s3 adapter", md(adapters=[{**ADAPTER, "source": "s3://loras/sql", "revision": "v1"}]),
            f"spec.adapters[0]: Invalid value: {ADAPTER_REVISION_RULE.message}"),
    Invalid("md: two adapters named sql", md(adapters=[ADAPTER, {**ADAPTER, "source": "hf://org/other"}]),
            'spec.adapters[1]: Duplicate value: {"name":"sql"}'),
]

# --- InferenceCascade ---------------------------------------------------------------------------------------------

EXACTLY_ONE_TIER_KIND = "set exactly one of modelDeployment, openai, bedrock or sagemaker"
DEFAULT_MAX_TIER_RULE = "escalation.defaultMaxTier must name one of the tiers"
MODEL_NAME_RULE = "modelName must differ from every tier name"
SMALL = {"name": "small", "modelDeployment": {"name": "llama"}}
BEDROCK = {"name": "large", "bedrock": {"modelId": "anthropic.claude", "region": "us-east-1"}}

INFERENCE_CASCADE_ROWS = [
    Invalid("ic: tier with no kind", ic(tiers=[SMALL, {"name": "large"}]),
            f'spec.tiers[1]: Invalid value: {EXACTLY_ONE_TIER_KIND}'),
    Invalid("ic: tier with two kinds", ic(tiers=[{**SMALL, "bedrock": BEDROCK["bedrock"]}]),
            f'spec.tiers[0]: Invalid value: {EXACTLY_ONE_TIER_KIND}'),
    Invalid("ic: defaultMaxTier names no tier", ic(escalation={"defaultMaxTier": "huge"}),
            f'spec: Invalid value: {DEFAULT_MAX_TIER_RULE}'),
    Invalid("ic: modelName equals a tier name", ic(modelName="small"),
            f'spec: Invalid value: {MODEL_NAME_RULE}'),
    Invalid("ic: no tiers", ic(tiers=[]), "spec.tiers: Invalid value: 0: spec.tiers in body should have at least 1 items"),
    Invalid("ic: tiers missing", without(ic(), "spec", "tiers"), "spec.tiers: Required value"),
    Invalid("ic: nine tiers", ic(tiers=[{"name": f"t{i}", "modelDeployment": {"name": "llama"}} for i in range(9)]),
            "spec.tiers: Too many: 9: must have at most 8 items"),
    Invalid("ic: tier name not a DNS label", ic(tiers=[{"name": "Not_A_Label", "modelDeployment": {"name": "llama"}}]),
            'spec.tiers[0].name: Invalid value: "Not_A_Label": spec.tiers[0].name in body should match'),
    Invalid("ic: two tiers with one name", ic(tiers=[SMALL, {**BEDROCK, "name": "small"}]),
            'spec.tiers[1]: Duplicate value: {"name":"small"}'),
    Invalid("ic: bedrock region malformed",
            ic(tiers=[SMALL, {"name": "large", "bedrock": {"modelId": "m", "region": "US_EAST_1"}}]),
            'spec.tiers[1].bedrock.region: Invalid value: "US_EAST_1": spec.tiers[1].bedrock.region in body should match'),
    Invalid("ic: openai tier without a model",
            ic(tiers=[SMALL, {"name": "large", "openai": {"url": "https://llm.example.com/v1"}}]),
            "spec.tiers[1].openai.model: Required value"),
    Invalid("ic: sagemaker payload unknown",
            ic(tiers=[SMALL, {"name": "large", "sagemaker": {"endpointName": "lmi", "region": "us-west-2",
                                                              "payload": "tensors"}}]),
            'spec.tiers[1].sagemaker.payload: Unsupported value: "tensors": supported values: "messages", "inputs"'),
    Invalid("ic: connect timeout zero",
            ic(tiers=[{**SMALL, "timeouts": {"connectSeconds": 0}}, BEDROCK]),
            "spec.tiers[0].timeouts.connectSeconds: Invalid value: 0: "
            "spec.tiers[0].timeouts.connectSeconds in body should be greater than 0"),
    Invalid("ic: positive log-probability threshold", ic(escalation={"minMeanLogprob": 0.5}),
            "spec.escalation.minMeanLogprob: Invalid value: 0.5: "
            "spec.escalation.minMeanLogprob in body should be less than or equal to 0"),
    Invalid("ic: body limit below 1 KiB", ic(gateway={"maxBodyBytes": 100}),
            "spec.gateway.maxBodyBytes: Invalid value: 100: spec.gateway.maxBodyBytes in body should be greater than or "
            "equal to 1024"),
    Invalid("ic: trustedHeader mode without its settings", ic(auth={"mode": "trustedHeader"}),
            "spec.auth: Invalid value: auth mode trustedHeader needs auth.trustedHeader"),
    Invalid("ic: trusted header with no proof of the proxy",
            ic(auth={"mode": "trustedHeader", "trustedHeader": {"header": "x-tenant"}}),
            "spec.auth.trustedHeader: Invalid value: trustedHeader needs proxyCidrs or sharedSecretHeader with "
            "sharedSecretRef: otherwise any client names any tenant"),
    Invalid("ic: unknown gateway service type", ic(gateway={"serviceType": "ExternalName"}),
            'spec.gateway.serviceType: Unsupported value: "ExternalName": supported values: "ClusterIP", "NodePort", '
            '"LoadBalancer"'),
]

# --- CacheTier ------------------------------------------------------------------------------------------------------

EXACTLY_ONE_BACKEND = "set exactly one of inCluster or external"
OPENAI_EMBEDDING_RULE = "embedding kind openai needs url"
BEDROCK_EMBEDDING_RULE = "embedding kind bedrock needs model (a Titan model id) and region"
SEMANTIC_ONLY_RULE = "semantic settings apply only to mode semantic"
EXTERNAL = {"external": {"url": "redis://redis.cache:6379/0"}}

CACHE_TIER_ROWS = [
    Invalid("ct: empty backend", with_spec(ct(), backend={}),
            f'spec.backend: Invalid value: {EXACTLY_ONE_BACKEND}'),
    Invalid("ct: both backends", with_spec(ct(), backend={"inCluster": {}, **EXTERNAL}),
            f'spec.backend: Invalid value: {EXACTLY_ONE_BACKEND}'),
    Invalid("ct: openai embedding without url", ct(mode="semantic", semantic={"embedding": {"kind": "openai"}}),
            f'spec.semantic.embedding: Invalid value: {OPENAI_EMBEDDING_RULE}'),
    Invalid("ct: bedrock embedding without region",
            ct(mode="semantic", semantic={"embedding": {"kind": "bedrock", "model": "amazon.titan-embed-text-v2:0"}}),
            f'spec.semantic.embedding: Invalid value: {BEDROCK_EMBEDDING_RULE}'),
    Invalid("ct: bedrock embedding without model",
            ct(mode="semantic", semantic={"embedding": {"kind": "bedrock", "region": "us-east-1"}}),
            f'spec.semantic.embedding: Invalid value: {BEDROCK_EMBEDDING_RULE}'),
    Invalid("ct: semantic settings in exact mode", ct(semantic={"similarityThreshold": 0.9}),
            f'spec: Invalid value: {SEMANTIC_ONLY_RULE}'),
    Invalid("ct: unknown mode", ct(mode="fuzzy"),
            'spec.mode: Unsupported value: "fuzzy": supported values: "exact", "semantic"'),
    Invalid("ct: redis url with credentials",
            with_spec(ct(), backend={"external": {"url": "redis://user:secret@r:6379/0"}}),
            'spec.backend.external.url: Invalid value: "redis://user:secret@r:6379/0": '
            "spec.backend.external.url in body should match"),
    Invalid("ct: external backend without url", with_spec(ct(), backend={"external": {}}),
            "spec.backend.external.url: Required value"),
    Invalid("ct: ttl zero", ct(ttlSeconds=0),
            "spec.ttlSeconds: Invalid value: 0: spec.ttlSeconds in body should be greater than or equal to 1"),
    Invalid("ct: memory below 16 MiB", ct(maxMemoryMB=8),
            "spec.maxMemoryMB: Invalid value: 8: spec.maxMemoryMB in body should be greater than or equal to 16"),
    Invalid("ct: similarity threshold zero", ct(mode="semantic", semantic={"similarityThreshold": 0}),
            "spec.semantic.similarityThreshold: Invalid value: 0: "
            "spec.semantic.similarityThreshold in body should be greater than 0"),
    Invalid("ct: similarity threshold above one", ct(mode="semantic", semantic={"similarityThreshold": 1.5}),
            "spec.semantic.similarityThreshold: Invalid value: 1.5: "
            "spec.semantic.similarityThreshold in body should be less than or equal to 1"),
    Invalid("ct: unknown embedding kind", ct(mode="semantic", semantic={"embedding": {"kind": "cohere"}}),
            'spec.semantic.embedding.kind: Unsupported value: "cohere": supported values: "local", "openai", "bedrock"'),
    Invalid("ct: tenant header with a space", ct(isolation={"tenantHeader": "x tenant"}),
            'spec.isolation.tenantHeader: Invalid value: "x tenant": spec.isolation.tenantHeader in body should match'),
    Invalid("ct: cacheable temperature above 2", ct(cacheable={"maxTemperature": 2.5}),
            "spec.cacheable.maxTemperature: Invalid value: 2.5: "
            "spec.cacheable.maxTemperature in body should be less than or equal to 2"),
]

ROWS = [*MODEL_DEPLOYMENT_ROWS, *INFERENCE_CASCADE_ROWS, *CACHE_TIER_ROWS]


# --- the table itself ---------------------------------------------------------------------------------------------

def cel_rules(schema: dict[str, Any], at: str = "") -> Iterator[tuple[str, str]]:
    """(location, message) of every x-kubernetes-validations rule; a rule without a message reports itself."""
    for entry in schema.get("x-kubernetes-validations", []):
        yield at or "<root>", entry.get("message") or f"failed rule: {entry['rule']}"
    for name, sub in schema.get("properties", {}).items():
        yield from cel_rules(sub, f"{at}.{name}" if at else name)
    if isinstance(schema.get("items"), dict):
        yield from cel_rules(schema["items"], f"{at}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from cel_rules(schema["additionalProperties"], f"{at}{{}}")


CEL_RULES = [(kind, at, message) for kind, crd in CRDS.items() for at, message in cel_rules(openapi_schema(crd))]


def test_table_covers_every_cel_rule_in_the_crds() -> None:
    assert {kind for kind, _, _ in CEL_RULES} == OUR_KINDS
    uncovered = [f"{kind} {at}: {message}" for kind, at, message in CEL_RULES
                 if not any(row.kind == kind and message in row.message for row in ROWS)]
    assert not uncovered, "CEL rules with no row refused by the real server (add one to the table):\n" + "\n".join(
        uncovered)


def test_table_reuses_every_unit_tier_row_and_covers_each_kind() -> None:
    assert set(UNIT_MD_SERVER_MESSAGES) == set(UNIT_MD_SCHEMA_INVALID), (
        "tests/unit/test_crd_modeldeployment.py SCHEMA_INVALID changed: give each row the server's message here")
    counts = {kind: sum(row.kind == kind for row in ROWS) for kind in OUR_KINDS}
    assert counts["ModelDeployment"] >= 15 and counts["InferenceCascade"] >= 8 and counts["CacheTier"] >= 7, counts
    assert len({row.id for row in ROWS}) == len(ROWS)
    checks = {"pattern": "should match", "enum": "Unsupported value", "range": "should be greater than",
              "maximum": "should be less than", "required": "Required value", "items": "must have at most"}
    for kind in OUR_KINDS:
        missing = [check for check, text in checks.items()
                   if not any(row.kind == kind and text in row.message for row in ROWS)]
        assert not missing or kind == "CacheTier" and missing == ["items"], (kind, missing)


# --- the real server ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def validation_namespace(api: Any, crds: list[dict[str, Any]]) -> Iterator[str]:
    """One namespace for the whole table (a namespace per row would only add churn); deleted afterwards."""
    with throwaway_namespace(api, "neuroscale-e2e-validation") as name:
        yield name


def for_server(obj: dict[str, Any], name: str, namespace: str) -> dict[str, Any]:
    """The object as a user sends it: the server assigns uid, generation and resourceVersion itself."""
    body = copy.deepcopy(obj)
    body["metadata"] = {"name": name, "namespace": namespace}
    return body


def refusal(call: Any) -> tuple[int, str]:
    """The HTTP status and Status message of a refused call.

    Servers before 1.32 print a CEL failure as `<path>: Invalid value: "object": <message>`, later ones without the
    `"object": `; the table uses the later form.
    """
    with pytest.raises(kubernetes.client.ApiException) as refused:
        call()
    message = json.loads(refused.value.body)["message"]
    return refused.value.status, message.replace('Invalid value: "object": ', "Invalid value: ")


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_api_server_refuses_with_the_message(api: Any, validation_namespace: str, row: Invalid) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    plural = PLURALS[row.kind]
    name = f"case-{ROWS.index(row):02d}"
    body = for_server(row.obj, name, validation_namespace)
    if row.via == "status":
        # A create drops status (status is a subresource): the object goes in valid, the bad status after.
        status = body.pop("status")
        custom.create_namespaced_custom_object(GROUP, VERSION, validation_namespace, plural, body)
        code, message = refusal(lambda: custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, validation_namespace, plural, name, {"status": status}))
    else:
        code, message = refusal(lambda: custom.create_namespaced_custom_object(
            GROUP, VERSION, validation_namespace, plural, body))
    assert code == 422, message
    assert f'{row.kind}.{GROUP} "{name}" is invalid' in message
    assert row.message in message


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_unit_tier_model_refuses_what_the_server_refuses(row: Invalid) -> None:
    """The unit tier's jsonschema + cel-python model must refuse every row too, with the same CEL message."""
    rejections = SCHEMAS[row.kind].rejections(row.obj)
    assert rejections, f"the unit tier's model admits what the API server refuses: {row.message}"
    cel = [message for _, _, message in CEL_RULES if message in row.message]
    for message in cel:
        assert any(message in rejection for rejection in rejections), rejections


# --- valid objects ------------------------------------------------------------------------------------------------

def example_objects() -> dict[str, dict[str, Any]]:
    """Every neuroscale object in examples/*.yaml (the directory also holds Karpenter and Argo CD objects)."""
    found = {}
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("apiVersion") == f"{GROUP}/{VERSION}":
                found[f"{path.name}: {doc['kind']} {doc['metadata']['name']}"] = doc
    return found


EXAMPLES = example_objects()
VALID = {
    **{f"unit md: {key}": obj for key, obj in UNIT_MD_VALID.items()},
    "factory InferenceCascade": ic(),
    "factory CacheTier": ct(),
    "InferenceCascade with every tier kind": ic(tiers=[
        SMALL, BEDROCK,
        {"name": "sm", "sagemaker": {"endpointName": "lmi-endpoint", "region": "us-west-2", "payload": "inputs"}},
        {"name": "oai", "openai": {"url": "http://gpt.example/v1", "model": "gpt"}, "maxPromptTokens": 8000},
    ], modelName="chat", escalation={"defaultMaxTier": "large", "minMeanLogprob": -1.5}, cacheTierRef={"name": "c"}),
    "semantic CacheTier on an external Redis with bedrock embeddings": with_spec(
        ct(), mode="semantic", backend={"external": {"url": "rediss://cache.example:6380/1",
                                                     "passwordSecretRef": {"name": "redis"}}},
        semantic={"similarityThreshold": 1, "embedding": {"kind": "bedrock", "model": "amazon.titan-embed-text-v2:0",
                                                         "region": "us-east-1"}}),
    **{f"example {key}": obj for key, obj in EXAMPLES.items()},
}


def test_examples_hold_every_kind() -> None:
    assert {obj["kind"] for obj in EXAMPLES.values()} == OUR_KINDS


@pytest.mark.parametrize("obj", VALID.values(), ids=VALID.keys())
def test_api_server_admits_valid_objects_with_the_unit_tiers_defaults(api: Any, validation_namespace: str,
                                                                     obj: dict[str, Any]) -> None:
    custom = kubernetes.client.CustomObjectsApi(api)
    body = for_server(obj, obj["metadata"]["name"], validation_namespace)
    admitted = custom.create_namespaced_custom_object(GROUP, VERSION, validation_namespace, PLURALS[obj["kind"]],
                                                      body, dry_run="All")
    assert admitted["metadata"]["uid"]
    # The server's structural defaulting and the unit tier's model of it agree on the whole spec.
    assert admitted["spec"] == SCHEMAS[obj["kind"]].defaulted(body)["spec"]
    assert "status" not in admitted, "a create must drop status (status subresource)"


def test_unknown_fields_are_pruned_and_refused_under_strict_field_validation(api: Any,
                                                                            validation_namespace: str) -> None:
    """The unit tier assumes the server prunes unknown fields; kubectl's default (Strict) refuses them instead."""
    custom = kubernetes.client.CustomObjectsApi(api)
    namespace = validation_namespace
    body = for_server(deep_merge(md(), {"spec": {"colour": "blue", "model": {"quantization": "awq"}}}), "pruned",
                      namespace)
    admitted = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, "modeldeployments", body,
                                                      dry_run="All")
    assert "colour" not in admitted["spec"] and "quantization" not in admitted["spec"]["model"]
    code, message = refusal(lambda: custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments", body, dry_run="All", field_validation="Strict"))
    assert code == 400  # BadRequest, not Invalid: strict field validation refuses the request itself
    assert 'unknown field "spec.colour"' in message and 'unknown field "spec.model.quantization"' in message
