"""The compiled-artifact key and the compile-cache steps in the pod template.

Covers: every input that shapes the compiled graph changes the key (model, revision, engine, image/SDK, compiler
target, TP, batch, sequence length, dtype, KV-cache dtype, prefix caching, user engine arguments such as buckets in
a neuron config, user environment, a speculative head and its source, LoRA slots); what does not (name, namespace, replicas, autoscaling, service, scheduling,
labels, served model name, the compile-cache URI itself) leaves it alone, so two ModelDeployments share one set;
trn1 and trn1n (one chip) share a key; the key is a pure function of its inputs; the restore syncs only
`<uri>/<key>/`, runs before the Hub download and brings the Hub weights (which the download then skips); the upload
sidecar knows its pod, the engine's health endpoint and the key's manifest; without a compile cache neither step
is rendered but the pod still carries its key (cold starts are measured per key).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.render import EngineImages, render_model_deployment
from neuroscale.render.artifacts import ArtifactInputs, artifact_key, graph_args, keyed_prefix, marker_location
from neuroscale.render.modeldeployment import RenderedModel
from tests.support.factories import deep_merge

BASE: dict[str, Any] = {
    "model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct", "maxModelLen": 4096},
    "engine": {"name": "vllm"},
    "accelerator": {"families": ["inf2"]},
    "compileCache": {"uri": "s3://cache-bucket/neuron"},
}


def render(name: str = "llama", namespace: str = "models", replicas: int = 1, images: EngineImages | None = None,
           **overrides: Any) -> RenderedModel:
    spec = ModelDeploymentSpec.model_validate(deep_merge(BASE, overrides))
    return render_model_deployment(name, namespace, spec, replicas, images=images)


def key(**overrides: Any) -> str:
    return render(**overrides).artifact_key


GRAPH_CHANGES = {
    "model": {"model": {"source": "hf://mistralai/Mistral-7B-Instruct-v0.3"}},
    "revision": {"model": {"revision": "0e9e39f"}},
    "engine": {"engine": {"name": "tgi"}},
    "image (SDK)": {"engine": {"image": "public.ecr.aws/neuron/pytorch-inference-vllm-neuronx:other-sdk"}},
    "compiler target": {"accelerator": {"families": ["trn1"]}},
    "tensor parallel": {"accelerator": {"instanceType": "inf2.48xlarge", "tensorParallelDegree": 8}},
    "batch size": {"batching": {"maxNumSeqs": 16}},
    "sequence length": {"model": {"maxModelLen": 8192}},
    "dtype": {"model": {"dtype": "int8"}},
    "kv cache dtype": {"model": {"kvCacheDtype": "fp8"}},
    "prefix caching": {"engine": {"prefixCaching": True}},
    "buckets (neuron config)": {"engine": {"args": [
        "--additional-config", '{"override_neuron_config": {"context_encoding_buckets": [512, 1024]}}']}},
    "compiler flags (env)": {"engine": {"env": [{"name": "NEURON_CC_FLAGS", "value": "--optlevel 1"}]}},
    "speculative head": {"speculativeDecoding": {"method": "eagle", "draftModel": {"source": "s3://heads/eagle/"}}},
    "LoRA slots": {"adapters": [{"name": "sql", "source": "s3://adapters/sql/", "rank": 16}]},
}


def test_a_different_speculative_head_is_a_different_graph() -> None:
    # The arguments name only the head's local path; its source is what tells two heads apart.
    head = {"method": "eagle", "draftModel": {"source": "s3://heads/eagle-a/"}}
    other = {"method": "eagle", "draftModel": {"source": "s3://heads/eagle-b/"}}
    assert key(speculativeDecoding=head) != key(speculativeDecoding=other)


@pytest.mark.parametrize("change", GRAPH_CHANGES.values(), ids=GRAPH_CHANGES.keys())
def test_every_input_that_shapes_the_graph_changes_the_key(change: dict[str, Any]) -> None:
    assert key(**change) != key()


IRRELEVANT = {
    "name and namespace": {"name": "other", "namespace": "team-b"},
    "replicas": {"replicas": 7},
    "autoscaling": {"autoscaling": {"minReplicas": 2, "maxReplicas": 9, "coldStartSeconds": 120}},
    "service": {"service": {"type": "LoadBalancer", "port": 9000}},
    "scheduling and labels": {"scheduling": {"nodeSelector": {"team": "a"}, "priorityClassName": "high"}},
    "served model name": {"model": {"servedModelName": "chat"}},
    "resources": {"resources": {"cpu": "20", "memory": "100Gi"}},
    "service account": {"serviceAccount": {"roleArn": "arn:aws:iam::111122223333:role/models"}},
    "compile cache location": {"compileCache": {"uri": "s3://other-bucket/elsewhere/"}},
    "hub token": {"engine": {"hubTokenSecretRef": {"name": "hf-token"}}},
}


# Sizing weighs replica counts (autoscaling bounds) in its choice of TP, which does shape the graph: pinned here.
PINNED = {"accelerator": {"instanceType": "inf2.8xlarge", "tensorParallelDegree": 2}}


@pytest.mark.parametrize("change", IRRELEVANT.values(), ids=IRRELEVANT.keys())
def test_what_does_not_shape_the_graph_leaves_the_key_alone(change: dict[str, Any]) -> None:
    assert key(**deep_merge(PINNED, change)) == key(**PINNED)


def test_trn1_and_trn1n_are_one_compiler_target() -> None:
    trn1 = render(accelerator={"instanceType": "trn1.32xlarge", "tensorParallelDegree": 8, "families": []})
    trn1n = render(accelerator={"instanceType": "trn1n.32xlarge", "tensorParallelDegree": 8, "families": []})
    assert trn1.artifact_key == trn1n.artifact_key


def test_the_key_is_a_pure_function_of_its_inputs() -> None:
    inputs = ArtifactInputs(model="hf://a/b", revision=None, engine="vllm", image="img:1", target="inferentia2",
                            tensor_parallel=2, max_num_seqs=8, max_model_len=4096, dtype="bf16", kv_cache_dtype="auto",
                            args=("serve", "/models/weights"), env=(("A", "1"),))
    again = ArtifactInputs(**{**inputs.__dict__})
    assert artifact_key(inputs) == artifact_key(again)
    assert len(artifact_key(inputs)) == 32 and int(artifact_key(inputs), 16) >= 0
    assert json.loads(inputs.canonical())["tensor_parallel"] == 2


def test_runtime_only_flags_are_dropped_with_their_values() -> None:
    assert graph_args(["serve", "/m", "--host", "0.0.0.0", "--port=8080", "--served-model-name", "x",
                       "--max-num-seqs", "8"]) == ("serve", "/m", "--max-num-seqs", "8")


def test_marker_location_is_inside_the_keyed_prefix() -> None:
    prefix = keyed_prefix("s3://bucket/a/b/", "k1")
    assert prefix == "s3://bucket/a/b/k1/"
    assert marker_location(prefix) == ("bucket", "a/b/k1/complete")
    assert marker_location(keyed_prefix("s3://bucket", "k1")) == ("bucket", "k1/complete")


def _pod(rendered: RenderedModel) -> dict[str, Any]:
    (deployment,) = [o for o in rendered.objects if o["kind"] == "Deployment"]
    return deployment["spec"]["template"]


def test_restore_runs_first_and_brings_the_hub_weights_the_download_then_skips() -> None:
    rendered = render()
    spec = _pod(rendered)["spec"]
    inits = [c["name"] for c in spec["initContainers"]]
    assert inits == ["restore-compile-cache", "download-model"]
    restore, download = spec["initContainers"]
    assert restore["args"][1] == f"s3://cache-bucket/neuron/{rendered.artifact_key}/" == rendered.artifact_prefix
    assert restore["args"][2:] == ["/var/cache/neuron", "/models/weights"]
    assert download["args"][-1] == "/models/weights/.neuroscale-weights-restored"


def test_upload_sidecar_knows_its_pod_the_health_endpoint_and_the_manifest() -> None:
    rendered = render(engine={"name": "djl-lmi"})
    containers = {c["name"]: c for c in _pod(rendered)["spec"]["containers"]}
    upload = containers["upload-compile-cache"]
    # DJL-LMI fetches Hub weights itself: only /var/cache/neuron travels, read-only.
    assert upload["args"][1:] == [rendered.artifact_prefix, "/var/cache/neuron", "", "8080", "/ping"]
    env = {e["name"]: e for e in upload["env"]}
    assert env["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert json.loads(env["MANIFEST"]["value"])["engine"] == "djl-lmi"
    assert all(m.get("readOnly") for m in upload["volumeMounts"] if m["name"] != "tmp")
    assert upload["securityContext"]["runAsNonRoot"] is True


def test_without_a_compile_cache_the_pod_still_carries_its_key() -> None:
    rendered = render(compileCache=None)
    template = _pod(rendered)
    assert rendered.artifact_prefix is None
    assert template["metadata"]["annotations"]["neuroscale.io/artifact-key"] == rendered.artifact_key
    assert [c["name"] for c in template["spec"]["containers"]] == ["engine"]
    assert [c["name"] for c in template["spec"].get("initContainers", [])] == ["download-model"]
