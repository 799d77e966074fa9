"""Properties of rendering over generated specs (hypothesis).

Covers: any valid spec either renders objects that pass the Kubernetes 1.31 OpenAPI schema or is refused with a
SizingError/ValueError carrying a message (never another exception); user arguments reach the container verbatim
as separate list elements and no container is started through a shell (but the compile-cache steps, which run
our fixed scripts with the spec's values as positional arguments); the hub token is only ever a secret
reference; every quantity is canonical; selectors match the pod labels; device requests equal limits and match
the sizing.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.render import render_model_deployment
from neuroscale.render.compile_cache import RESTORE_SCRIPT, UPLOAD_SCRIPT
from neuroscale.render.quantities import canonical_quantity
from neuroscale.sizing.catalog import CATALOG
from neuroscale.sizing.sizer import SizingError

SHELLS = {"sh", "bash", "/bin/sh", "/bin/bash", "dash", "zsh"}
SCRIPTS = {"restore-compile-cache": RESTORE_SCRIPT, "upload-compile-cache": UPLOAD_SCRIPT}
TOKEN_SECRET = "hub-token-secret"

names = st.from_regex(r"\A[a-z]([-a-z0-9]{0,40}[a-z0-9])?\Z")
label_values = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
sources = st.sampled_from([
    "hf://meta-llama/Llama-3.2-1B-Instruct",
    "hf://meta-llama/Llama-3.1-8B-Instruct",
    "hf://mistralai/Mistral-7B-Instruct-v0.3",
    "hf://Qwen/Qwen2.5-14B-Instruct",
    "hf://meta-llama/Llama-3.3-70B-Instruct",
    "s3://weights-bucket/models/llama-3.1-8b/",
    "s3://weights-bucket/qwen2.5-7b",
])
quantities = st.one_of(
    st.integers(1, 64).map(str),
    st.integers(100, 64000).map(lambda m: f"{m}m"),
    st.integers(1, 700).map(lambda g: f"{g}Gi"),
    st.integers(512, 65536).map(lambda m: f"{m}Mi"),
)
# Arbitrary text, including shell metacharacters, quotes and newlines.
free_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


@st.composite
def specs(draw: st.DrawFn) -> dict[str, Any]:
    engine = draw(st.sampled_from(["vllm", "tgi", "djl-lmi"]))
    vllm = engine == "vllm"
    source = draw(sources)
    model: dict[str, Any] = {
        "source": source,
        "maxModelLen": draw(st.sampled_from([128, 512, 2048, 4096, 8192])),
        "dtype": draw(st.sampled_from(["bf16", "fp16", "fp8", "int8"] if vllm else ["bf16", "fp16"])),
        "kvCacheDtype": draw(st.sampled_from(["auto", "fp8"] if vllm else ["auto"])),
    }
    if source.startswith("hf://") and draw(st.booleans()):
        model["revision"] = draw(st.from_regex(r"\A[a-z0-9]{1,12}\Z"))
    accelerator: dict[str, Any] = {}
    if draw(st.booleans()):
        instance = draw(st.sampled_from([n for n in CATALOG if vllm or not n.startswith("trn2")]))
        accelerator["instanceType"] = instance
        if draw(st.booleans()):
            accelerator["tensorParallelDegree"] = draw(st.sampled_from(CATALOG[instance].allowed_tp))
    if draw(st.booleans()):
        accelerator["schedulerName"] = draw(names)
    spec: dict[str, Any] = {
        "model": model,
        "engine": {
            "name": engine,
            "args": draw(st.lists(free_text, max_size=4)),
            "env": draw(st.lists(st.fixed_dictionaries({"name": st.from_regex(r"\A[A-Z_][A-Z0-9_]{0,15}\Z"),
                                                        "value": free_text}), max_size=3)),
            "prefixCaching": vllm and draw(st.booleans()),
        },
        "accelerator": accelerator,
        "batching": {"maxNumSeqs": draw(st.sampled_from([1, 2, 4, 8, 16, 32]))},
        "service": {"type": draw(st.sampled_from(["ClusterIP", "NodePort", "LoadBalancer"])),
                    "port": draw(st.integers(1, 65535))},
        "scheduling": {
            "nodeSelector": draw(st.dictionaries(st.from_regex(r"\A[a-z]{1,10}(\.[a-z]{1,5})?/[a-z]{1,10}\Z"),
                                                 label_values, max_size=2)),
            "tolerations": draw(st.lists(st.fixed_dictionaries(
                {"key": names, "operator": st.just("Exists"),
                 "effect": st.sampled_from(["NoSchedule", "PreferNoSchedule", "NoExecute"])}), max_size=2)),
        },
    }
    if draw(st.booleans()):
        spec["engine"]["hubTokenSecretRef"] = {"name": TOKEN_SECRET, "key": "token"}
    if draw(st.booleans()):
        spec["compileCache"] = {"uri": "s3://cache-bucket/neuron/" + draw(names)}
    if draw(st.booleans()):
        spec["serviceAccount"] = draw(st.sampled_from([{"name": "reader"},
                                                       {"roleArn": "arn:aws:iam::123456789012:role/reader"}]))
    if draw(st.booleans()):
        spec["resources"] = {"cpu": draw(quantities), "memory": draw(quantities)}
    if draw(st.booleans()):
        spec["autoscaling"] = {"coldStartSeconds": draw(st.integers(0, 7200))}
    return spec


def _all_containers(obj: dict) -> list[dict]:
    pod = obj["spec"]["template"]["spec"]
    return pod.get("initContainers", []) + pod["containers"]


def _quantities(obj: Any) -> list[str]:
    """Every resource quantity and emptyDir size limit in an object."""
    found: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("requests", "limits") and isinstance(value, dict):
                found += list(value.values())
            elif key == "sizeLimit":
                found.append(value)
            else:
                found += _quantities(value)
    elif isinstance(obj, list):
        for item in obj:
            found += _quantities(item)
    return found


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wire=specs(), name=names, replicas=st.integers(0, 20))
def test_any_valid_spec_renders_valid_objects_or_a_clear_refusal(wire: dict, name: str, replicas: int):
    spec = ModelDeploymentSpec.model_validate(wire)
    try:
        rendered = render_model_deployment(name, "models", spec, replicas)
    except (SizingError, ValueError) as refusal:
        assert str(refusal).strip()
        return
    for obj in rendered.objects:
        kubernetes_validate.validate(obj, "1.31", strict=True)
        assert obj["metadata"]["namespace"] == "models"
        for quantity in _quantities(obj):
            assert canonical_quantity(quantity) == quantity

    deployment = next(obj for obj in rendered.objects if obj["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == replicas
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert rendered.selector.items() <= template_labels.items()

    containers = _all_containers(deployment)
    engine = deployment["spec"]["template"]["spec"]["containers"][0]
    user_args = wire["engine"]["args"]
    if user_args:
        assert engine["args"][-len(user_args):] == user_args
    for container in containers:
        if container["name"] in ("restore-compile-cache", "upload-compile-cache"):
            # The compile-cache steps run our own fixed bash scripts; the spec's values are positional arguments.
            assert container["command"] == ["bash", "-c", SCRIPTS[container["name"]]]
            assert wire["compileCache"]["uri"].rstrip("/") in container["args"][1]
            continue
        assert container["command"][0] not in SHELLS
        assert "-c" not in container["command"]
        assert all(isinstance(arg, str) for arg in container.get("args", []))
        for var in container.get("env", []):
            if var["name"] == "HF_TOKEN":
                assert "value" not in var
                assert var["valueFrom"]["secretKeyRef"]["name"] == TOKEN_SECRET
            else:
                assert "valueFrom" not in var

    resources = engine["resources"]
    where = rendered.sizing.placement
    assert resources["requests"][where.resource] == resources["limits"][where.resource] == str(where.count)
    neuron = {"aws.amazon.com/neuron", "aws.amazon.com/neuroncore"}
    assert neuron & set(resources["requests"]) == {where.resource}, "one kind of Neuron resource per pod"
