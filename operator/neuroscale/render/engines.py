"""How each serving engine is launched on Neuron: image, command, arguments, environment, health and metrics paths.

vLLM with the NxD Inference plugin is the recommended engine (inf2, trn1, trn2). TGI's Neuron backend is in
maintenance (inf2, trn1). DJL-LMI on transformers-neuronx is legacy: its last Neuron image ships SDK 2.20 and
transformers-neuronx reached end of support in SDK 2.26; it is kept so existing deployments keep rendering.
Every value is passed as a list element or an environment variable, never through a shell: the TGI and DJL image
entrypoint scripts (which word-split or `eval` their arguments) are bypassed by starting the server binary directly.

All three run as an unprivileged user: every path they write (HOME, the Hugging Face cache, /tmp, compiled
artifacts) is a mounted volume, and the DJL-LMI image even ships a `djl` user owning /opt/djl. Device access comes
from the Neuron device plugin, which needs neither root nor privileged mode.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, Protocol

EngineName = Literal["vllm", "tgi", "djl-lmi"]

# The port every engine listens on inside the pod (the vLLM Neuron DLC and DJL default; TGI is told via PORT).
CONTAINER_PORT = 8080

# Where init containers restore artifacts and the engine reads them (emptyDir volumes).
MODELS_DIR = "/models"
COMPILED_ARTIFACTS_DIR = "/var/cache/neuron"

# Neuron weight-quantization settings for NxD Inference's override_neuron_config (fp8 = e4m3).
_QUANTIZATION_DTYPE = {"int8": "int8", "fp8": "f8e4m3"}
_TORCH_DTYPE = {"bf16": "bfloat16", "fp16": "float16", "fp8": "bfloat16", "int8": "bfloat16"}

# vLLM's KV block size on Neuron: 32 tokens, as in the Neuron vLLM user guide and its prefix-caching examples.
KV_BLOCK_SIZE = 32


@dataclass(frozen=True)
class EngineImages:
    """Container images per engine, plus the AWS CLI image that restores artifacts from S3."""

    vllm: str = "public.ecr.aws/neuron/pytorch-inference-vllm-neuronx:0.16.0-neuronx-py312-sdk2.31.1-ubuntu24.04"
    tgi: str = "ghcr.io/huggingface/text-generation-inference:3.1.0-neuron"
    # The last DJL-LMI image with Neuron support, from the SageMaker DLC registry (us-east-1 mirror).
    djl_lmi: str = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.30.0-neuronx-sdk2.20.1"
    aws_cli: str = "public.ecr.aws/aws-cli/aws-cli:2.17.0"

    def for_engine(self, engine: EngineName) -> str:
        return {"vllm": self.vllm, "tgi": self.tgi, "djl-lmi": self.djl_lmi}[engine]


@dataclass(frozen=True)
class EngineInputs:
    """What an engine needs to know about the model and its compiled shapes."""

    model: str
    served_model_name: str
    tensor_parallel: int
    max_num_seqs: int
    max_model_len: int
    dtype: Literal["bf16", "fp16", "fp8", "int8"]
    kv_cache_dtype: Literal["auto", "fp8"]
    prefix_caching: bool
    compile_cache: bool
    revision: str | None = None


@dataclass(frozen=True)
class EngineLaunch:
    """The serving container's process and the HTTP paths the pod's probes and scrapers use."""

    command: list[str]
    args: list[str]
    env: list[dict[str, str]]
    health_path: str
    metrics_path: str


class ServingEngine(Protocol):
    name: EngineName

    def launch(self, inputs: EngineInputs) -> EngineLaunch: ...


def _env(**values: object) -> list[dict[str, str]]:
    return [{"name": key, "value": str(value)} for key, value in values.items()]


class Vllm:
    """`vllm serve` with the NxD Inference plugin; Neuron settings go through --additional-config."""

    name: EngineName = "vllm"

    def neuron_config(self, inputs: EngineInputs) -> dict[str, object]:
        """override_neuron_config for what vLLM's own flags cannot say: quantized weights and an FP8 KV cache.

        Never `--quantization neuron_quant` (Neuron vLLM user guide, "Quantization"). Prefix caching needs no entry:
        the plugin derives is_prefix_caching, the block layout and pa_num_blocks from vLLM's cache flags, and an
        explicit pa_num_blocks must then equal --num-gpu-blocks-override exactly (vllm-neuron model loader).
        """
        config: dict[str, object] = {}
        if inputs.dtype in _QUANTIZATION_DTYPE:
            config.update(
                quantized=True,
                quantization_dtype=_QUANTIZATION_DTYPE[inputs.dtype],
                quantization_type="per_channel_symmetric",
                # NxD Inference writes the quantized checkpoint here before compiling and reads it afterwards.
                quantized_checkpoints_path=f"{MODELS_DIR}/quantized",
            )
        if inputs.kv_cache_dtype == "fp8":
            config["kv_cache_quant"] = True
        return config

    @staticmethod
    def prefix_cache_blocks(inputs: EngineInputs) -> int:
        """Paged KV blocks: every sequence at full length (the plugin's minimum), so admission never waits on hits."""
        per_sequence = -(-inputs.max_model_len // KV_BLOCK_SIZE)
        return per_sequence * inputs.max_num_seqs

    def launch(self, inputs: EngineInputs) -> EngineLaunch:
        # Without prefix caching NxD Inference keeps a contiguous KV cache of max_model_len per sequence and sizes
        # it itself; the block size is only vLLM's bookkeeping (the Neuron vLLM guide serves with --block-size 32).
        args = [
            "serve",
            inputs.model,
            "--served-model-name", inputs.served_model_name,
            "--host", "0.0.0.0",
            "--port", str(CONTAINER_PORT),
            "--tensor-parallel-size", str(inputs.tensor_parallel),
            "--max-num-seqs", str(inputs.max_num_seqs),
            "--max-model-len", str(inputs.max_model_len),
            "--dtype", _TORCH_DTYPE[inputs.dtype],
            "--block-size", str(KV_BLOCK_SIZE),
        ]
        if inputs.prefix_caching:
            args += ["--enable-prefix-caching", "--num-gpu-blocks-override", str(self.prefix_cache_blocks(inputs))]
        else:
            # vLLM V1 turns prefix caching on by default; on Neuron it changes the compiled KV layout.
            args.append("--no-enable-prefix-caching")
        if inputs.revision:
            args += ["--revision", inputs.revision]
        neuron_config = self.neuron_config(inputs)
        if neuron_config:
            args += ["--additional-config", json.dumps({"override_neuron_config": neuron_config}, sort_keys=True)]
        # No EFA in a single-node serving pod; without this the runtime looks for EFA affinity and warns.
        env = _env(NEURON_SKIP_EFA_AFFINITY=1)
        if inputs.compile_cache:
            env += _env(NEURON_COMPILED_ARTIFACTS=COMPILED_ARTIFACTS_DIR)
        return EngineLaunch(
            command=["vllm"],
            args=args,
            env=env,
            health_path="/health",
            metrics_path="/metrics",
        )


class Tgi:
    """Text Generation Inference's Neuron backend (optimum-neuron): the launcher, shapes in its environment."""

    name: EngineName = "tgi"

    def launch(self, inputs: EngineInputs) -> EngineLaunch:
        # The compiled shapes (TGI Neuron backend docs): batch = max batch size, max_length = max total tokens,
        # input tokens below it, prefill tokens = batch x input. With all six variables set the image's entrypoint
        # would skip its cache lookup anyway, so the launcher is started directly.
        max_input_tokens = max(1, inputs.max_model_len * 3 // 4)
        env = _env(
            HF_NUM_CORES=inputs.tensor_parallel,
            HF_AUTO_CAST_TYPE=inputs.dtype,
            MAX_BATCH_SIZE=inputs.max_num_seqs,
            MAX_TOTAL_TOKENS=inputs.max_model_len,
            MAX_INPUT_TOKENS=max_input_tokens,
            MAX_BATCH_PREFILL_TOKENS=max_input_tokens * inputs.max_num_seqs,
            # The image caches hub downloads in /tmp; keep them on the sized models volume instead.
            HUGGINGFACE_HUB_CACHE=f"{MODELS_DIR}/huggingface/hub",
        )
        if inputs.compile_cache:
            # libneuronxla's compile cache: the init container has restored it to this local path.
            env += _env(NEURON_COMPILE_CACHE_URL=COMPILED_ARTIFACTS_DIR)
        return EngineLaunch(
            command=["text-generation-launcher"],
            args=["--model-id", inputs.model, "--port", str(CONTAINER_PORT)]
            + (["--revision", inputs.revision] if inputs.revision else []),
            env=env,
            health_path="/health",
            metrics_path="/metrics",
        )


class DjlLmi:
    """DJL Serving LMI on transformers-neuronx (legacy), configured through OPTION_* environment variables."""

    name: EngineName = "djl-lmi"

    def launch(self, inputs: EngineInputs) -> EngineLaunch:
        env = _env(
            HF_MODEL_ID=inputs.model,
            OPTION_ENTRYPOINT="djl_python.transformers_neuronx",
            OPTION_ROLLING_BATCH="auto",
            TENSOR_PARALLEL_DEGREE=inputs.tensor_parallel,
            OPTION_MAX_ROLLING_BATCH_SIZE=inputs.max_num_seqs,
            OPTION_N_POSITIONS=inputs.max_model_len,
            OPTION_DTYPE=inputs.dtype,
            SERVING_PROMETHEUS="true",
        )
        if inputs.revision:
            env += _env(OPTION_REVISION=inputs.revision)
        if inputs.compile_cache:
            env += _env(NEURON_COMPILE_CACHE_URL=COMPILED_ARTIFACTS_DIR)
        return EngineLaunch(
            # The server binary the image's entrypoint would run after `serve` (djl-serving docker/dockerd-entrypoint.sh).
            command=["/usr/bin/djl-serving"],
            args=[],
            env=env,
            health_path="/ping",
            metrics_path="/server/metrics",
        )


ENGINES: dict[str, ServingEngine] = {"vllm": Vllm(), "tgi": Tgi(), "djl-lmi": DjlLmi()}


def get_engine(name: str) -> ServingEngine:
    """The engine called `name`; a ValueError naming the supported engines otherwise."""
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"unknown engine {name!r}; supported: {', '.join(ENGINES)}") from None
