"""Rendering speculative decoding and LoRA adapters into the model server's pod.

Covers: `--speculative-config` as each image documents it (NxD Inference on inf2/trn1: method, local head path,
num_speculative_tokens and max_model_len; the vLLM Neuron plugin on trn2: EAGLE3 without max_model_len, and EAGLE v1
refused there); the LoRA flags (`--enable-lora`, `--max-loras` = number of adapters, `--max-lora-rank` rounded up to
a rank vLLM accepts, `--lora-modules name=path`); for every source kind, the head and every adapter are downloaded
by an init container into the directory the engine's flags name (followed through the volume mounts), with the hub
token only on Hub downloads and revisions passed on; user engine.args still come last; adapters and EAGLE v1 keep
sizing on inf2/trn1 (and a trn2-only family list is refused with the reason); an adapter named like the derived
served model name is refused; the models volume and the startup budget grow with the head and the adapters; every
object passes the Kubernetes schema; status lists the adapters and sizing reports their memory.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import kubernetes_validate
import pytest

from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.render import render_model_deployment
from neuroscale.render.modeldeployment import RenderedModel
from neuroscale.render.quantities import parse_quantity
from neuroscale.sizing.sizer import SizingError
from neuroscale.status.modeldeployment import Observed, model_deployment_status
from tests.support.factories import make_model_deployment
from tests.unit.test_render_modeldeployment import KUBERNETES_VERSION, download_target, on_volume

EAGLE = {"method": "eagle", "draftModel": {"source": "s3://eagle-heads/llama-3.1-8b"}, "numSpeculativeTokens": 4}
EAGLE3 = {"method": "eagle3", "draftModel": {"source": "hf://yuhuili/EAGLE3-LLaMA3.1-Instruct-8B",
                                             "revision": "main"}}
ADAPTERS = [{"name": "sql", "source": "hf://org/llama-3.1-8b-sql-lora", "rank": 8, "revision": "v2"},
            {"name": "support.v2", "source": "s3://loras/support", "rank": 24}]


def make_spec(**overrides: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(make_model_deployment(**overrides)["spec"])


def render(spec: ModelDeploymentSpec) -> RenderedModel:
    return render_model_deployment("llama", "models", spec, 1)


def pod(rendered: RenderedModel) -> dict:
    (deployment,) = [o for o in rendered.objects if o["kind"] == "Deployment"]
    return deployment["spec"]["template"]["spec"]


def args(rendered: RenderedModel) -> list[str]:
    return pod(rendered)["containers"][0]["args"]


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def speculative_config(rendered: RenderedModel) -> dict:
    return json.loads(flag(args(rendered), "--speculative-config"))


def test_nxd_inference_gets_the_documented_eagle_config() -> None:
    rendered = render(make_spec(speculativeDecoding=EAGLE, model={"maxModelLen": 2048}))
    assert rendered.sizing.instance.family in ("inf2", "trn1")
    assert speculative_config(rendered) == {"method": "eagle", "model": "/models/speculator",
                                            "num_speculative_tokens": 4, "max_model_len": 2048}
    assert "override_neuron_config" not in " ".join(args(rendered)), "the plugin sets fused speculation itself"


def test_the_vllm_neuron_plugin_gets_eagle3_without_a_draft_length() -> None:
    rendered = render(make_spec(speculativeDecoding=EAGLE3,
                                accelerator={"instanceType": "trn2.48xlarge", "families": []}))
    assert speculative_config(rendered) == {"method": "eagle3", "model": "/models/speculator",
                                            "num_speculative_tokens": 5}


def test_eagle_v1_keeps_sizing_off_trn2_and_says_why_when_it_cannot() -> None:
    big = {"source": "hf://meta-llama/Llama-3.1-405B-Instruct"}
    assert render(make_spec(model=big, accelerator={"families": []})).sizing.instance.family == "trn2"
    assert render(make_spec(model=big, accelerator={"families": []},
                            speculativeDecoding=EAGLE3)).sizing.instance.family == "trn2"
    with pytest.raises(SizingError, match="among inf2/trn1/trn1n instances"):
        render(make_spec(model=big, accelerator={"families": []}, speculativeDecoding=EAGLE))
    with pytest.raises(ValueError, match="EAGLE \\(v1\\) speculative decoding run on vLLM's NxD Inference image"):
        render(make_spec(speculativeDecoding=EAGLE, accelerator={"families": ["trn2"]}))


def test_lora_flags_register_every_adapter_in_a_fixed_slot() -> None:
    argv = args(render(make_spec(adapters=ADAPTERS)))
    assert "--enable-lora" in argv
    assert flag(argv, "--max-loras") == "2"
    assert flag(argv, "--max-lora-rank") == "32", "24 rounds up to the next rank vLLM accepts"
    start = argv.index("--lora-modules") + 1
    assert argv[start:start + 2] == ["sql=/models/adapters/sql", "support.v2=/models/adapters/support.v2"]


@pytest.mark.parametrize("rank, slot", [(1, 1), (8, 8), (9, 16), (16, 16), (300, 320), (512, 512)])
def test_max_lora_rank_is_a_rank_vllm_accepts(rank: int, slot: int) -> None:
    argv = args(render(make_spec(adapters=[{**ADAPTERS[1], "rank": rank}],
                                 model={"source": "hf://meta-llama/Llama-3.2-1B-Instruct"})))
    assert flag(argv, "--max-lora-rank") == str(slot)


def test_user_arguments_still_come_last() -> None:
    argv = args(render(make_spec(adapters=ADAPTERS, speculativeDecoding=EAGLE3,
                                 engine={"args": ["--max-cpu-loras", "4"]})))
    assert argv[-2:] == ["--max-cpu-loras", "4"]


@pytest.mark.parametrize("source", ["s3://eagle-heads/llama", "hf://org/eagle-head"])
def test_the_head_lands_where_the_engine_reads_it(source: str) -> None:
    rendered = render(make_spec(speculativeDecoding={**EAGLE, "draftModel": {"source": source}},
                                engine={"hubTokenSecretRef": {"name": "hf-token"}}))
    inits = {c["name"]: c for c in pod(rendered)["initContainers"]}
    head = inits["download-speculator"]
    target, repo = download_target(head)
    engine = pod(rendered)["containers"][0]
    assert on_volume(head, target) == on_volume(engine, speculative_config(rendered)["model"])
    assert repo == (source.removeprefix("hf://") if source.startswith("hf://") else None)
    hub_token = {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}
    assert (hub_token in head["env"]) == source.startswith("hf://")


def test_every_adapter_lands_where_lora_modules_points() -> None:
    rendered = render(make_spec(adapters=ADAPTERS, model={"source": "s3://weights/llama-3.1-8b"}))
    engine = pod(rendered)["containers"][0]
    argv = engine["args"]
    start = argv.index("--lora-modules") + 1
    paths = dict(module.split("=", 1) for module in argv[start:start + len(ADAPTERS)])
    inits = {c["name"]: c for c in pod(rendered)["initContainers"]}
    for index, adapter in enumerate(ADAPTERS):
        init = inits[f"download-adapter-{index}"]
        target, repo = download_target(init)
        assert on_volume(init, target) == on_volume(engine, paths[adapter["name"]])
        if repo is not None:
            assert repo == "org/llama-3.1-8b-sql-lora"
            assert init["args"][3] == "v2", "the adapter's revision is passed to the download"


def test_extensions_need_the_nxd_inference_image_and_a_distinct_name() -> None:
    spec = make_spec(adapters=ADAPTERS, accelerator={"families": []})
    assert render(spec).sizing.instance.family in ("inf2", "trn1", "trn1n")
    with pytest.raises(ValueError, match="LoRA adapters run on vLLM's NxD Inference image"):
        render(make_spec(adapters=ADAPTERS, accelerator={"families": ["trn2"]}))
    with pytest.raises(ValueError, match="served model's name"):
        render(make_spec(adapters=[{**ADAPTERS[0], "name": "Llama-3.1-8B-Instruct"}]))


def test_the_models_volume_holds_the_head_and_the_adapters() -> None:
    def models_disk(spec: ModelDeploymentSpec) -> float:
        (volume,) = [v for v in pod(render(spec))["volumes"] if v["name"] == "models"]
        return parse_quantity(volume["emptyDir"]["sizeLimit"])[0]

    plain = models_disk(make_spec(model={"source": "hf://meta-llama/Llama-3.3-70B-Instruct"},
                                  accelerator={"families": ["inf2"]}))
    extended = models_disk(make_spec(model={"source": "hf://meta-llama/Llama-3.3-70B-Instruct"},
                                     accelerator={"families": ["inf2"]}, speculativeDecoding=EAGLE3,
                                     adapters=[{**ADAPTERS[0], "rank": 512}]))
    assert extended > plain


def test_every_object_passes_the_kubernetes_schema() -> None:
    rendered = render(make_spec(adapters=ADAPTERS, speculativeDecoding=EAGLE,
                                engine={"hubTokenSecretRef": {"name": "hf-token"}}))
    for obj in rendered.objects:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


def test_status_lists_the_adapters() -> None:
    status = model_deployment_status(
        None, Observed(1, None, adapters=[{"name": "sql", "source": ADAPTERS[0]["source"], "rank": 8}]),
        generation=1, now=datetime(2026, 12, 3, tzinfo=UTC))
    assert status["adapters"] == [{"name": "sql", "source": "hf://org/llama-3.1-8b-sql-lora", "rank": 8}]
    assert "adapters" not in model_deployment_status(None, Observed(1, None, adapters=[]), generation=1,
                                                     now=datetime(2026, 12, 3, tzinfo=UTC))


def test_the_startup_budget_covers_loading_and_compiling_the_head() -> None:
    def startup_failures(spec: ModelDeploymentSpec) -> int:
        return pod(render(spec))["containers"][0]["startupProbe"]["failureThreshold"]

    big = {"source": "hf://meta-llama/Llama-3.3-70B-Instruct"}
    assert startup_failures(make_spec(model=big, speculativeDecoding=EAGLE3)) > startup_failures(make_spec(model=big))
