"""How each serving engine is launched on Neuron: image, command, arguments, environment, health and metrics paths.

vLLM is the recommended engine, in two images (NEURON.md "Engine fidelity findings", "Support status"): on inf2 and
trn1 the last NxD Inference vLLM image (vLLM 0.16, SDK 2.31.1: SDK 2.32 stopped publishing it, and the plugin that
replaces it runs on trn2/trn3 only), and on trn2 the vLLM Neuron plugin image (0.24, SDK 2.32), whose settings and
flags differ. TGI's Neuron backend is in maintenance (inf2, trn1). DJL-LMI on transformers-neuronx is legacy: its last
Neuron image ships SDK 2.20 and transformers-neuronx reached end of support in SDK 2.26; it is kept so existing
deployments keep rendering.
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

from neuroscale.sizing.memory import PLUGIN_FAMILIES

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

# vLLM's per-step timeout, as every vLLM Neuron plugin tutorial sets it next to the compilation timeout
# (vllm-neuron docs: quickstart-online-serving.md, migration-nxdi-to-vllm-neuron.md, tutorial-llama3-70b.md).
EXECUTE_MODEL_TIMEOUT_SECONDS = 1200
# The plugin's compilation timeout defaults to 600 s, which large models exceed (tutorial-llama3-70b.md "Common
# issues"); AWS's examples raise it to 1200-6000 s. Never below the tutorials' value.
MIN_COMPILATION_TIMEOUT_SECONDS = 1200


def uses_vllm_plugin(family: str) -> bool:
    """Whether vLLM on this instance family runs the vLLM Neuron plugin image rather than NxD Inference."""
    return family in PLUGIN_FAMILIES


@dataclass(frozen=True)
class EngineImages:
    """Container images per engine, plus the AWS CLI image that restores artifacts from S3.

    vLLM images from the Neuron DLC README (aws-neuron/deep-learning-containers, "vllm-inference-neuronx" table):
    `vllm` is the last NxD Inference image, for inf2/trn1 (the 0.16 rows list trn1, trn2, trn3, inf2; SDK 2.32 no
    longer publishes it, release-notes/components/containers.rst); `vllm_plugin` is the vLLM Neuron plugin 0.24 image,
    whose row lists trn2 and trn3 only.
    """

    vllm: str = "public.ecr.aws/neuron/pytorch-inference-vllm-neuronx:0.16.0-neuronx-py312-sdk2.31.1-ubuntu24.04"
    vllm_plugin: str = (
        "public.ecr.aws/neuron/pytorch-inference-vllm-neuronx:0.24.0.1.1.0-neuronx-py313-sdk2.32.0-ubuntu24.04"
    )
    tgi: str = "ghcr.io/huggingface/text-generation-inference:3.1.0-neuron"
    # The last DJL-LMI image with Neuron support, from the SageMaker DLC registry (us-east-1 mirror).
    djl_lmi: str = "763104351884.dkr.ecr.us-east-1.amazonaws.com/djl-inference:0.30.0-neuronx-sdk2.20.1"
    aws_cli: str = "public.ecr.aws/aws-cli/aws-cli:2.17.0"

    def for_engine(self, engine: EngineName, family: str = "inf2") -> str:
        if engine == "vllm" and uses_vllm_plugin(family):
            return self.vllm_plugin
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
    # The instance family: vLLM on trn2/trn3 runs the vLLM Neuron plugin image, elsewhere NxD Inference.
    family: str = "inf2"
    # Seconds a compilation may take (the replica's compile budget); the plugin's own default is 600.
    compile_timeout_seconds: int = MIN_COMPILATION_TIMEOUT_SECONDS
    # vLLM flags for speculative decoding and LoRA adapters, already shaped for the family's image
    # (render/speculative_decoding.py, render/adapters.py).
    feature_args: tuple[str, ...] = ()

    @property
    def local_model(self) -> bool:
        """The model is a directory an init container filled, not a Hub id."""
        return self.model.startswith("/")


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
    """`vllm serve`: NxD Inference on inf2/trn1, the vLLM Neuron plugin on trn2; Neuron settings go through
    --additional-config."""

    name: EngineName = "vllm"

    @staticmethod
    def quantized_checkpoints_path(inputs: EngineInputs) -> str:
        """Where NxD Inference writes the quantized checkpoint before compiling, and reads it on every load.

        A load from compiled artifacts raises FileNotFoundError when this path does not exist, and the plugin then
        re-quantizes and recompiles (NxDI `checkpoint_loader_fn`; NEURON.md findings 3). It sits inside the
        compiled-artifacts directory, so a compile cache made from a pod's /var/cache/neuron holds it and the
        restore brings it back: new pods then neither quantize nor compile. A loaded artifact keeps the path it
        was compiled with, so it is the same with or without a compile cache.
        """
        return f"{COMPILED_ARTIFACTS_DIR}/quantized"

    def neuron_config(self, inputs: EngineInputs) -> dict[str, object]:
        """NxD Inference's override_neuron_config for what vLLM's flags cannot say: quantized weights, FP8 KV cache.

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
                quantized_checkpoints_path=self.quantized_checkpoints_path(inputs),
            )
        if inputs.kv_cache_dtype == "fp8":
            config["kv_cache_quant"] = True
        return config

    @staticmethod
    def prefix_cache_blocks(inputs: EngineInputs) -> int:
        """Paged KV blocks: every sequence at full length (the plugin's minimum), so admission never waits on hits."""
        per_sequence = -(-inputs.max_model_len // KV_BLOCK_SIZE)
        return per_sequence * inputs.max_num_seqs

    @staticmethod
    def _common_args(inputs: EngineInputs) -> list[str]:
        return [
            "serve",
            inputs.model,
            "--served-model-name", inputs.served_model_name,
            "--host", "0.0.0.0",
            "--port", str(CONTAINER_PORT),
            "--tensor-parallel-size", str(inputs.tensor_parallel),
            "--max-num-seqs", str(inputs.max_num_seqs),
            "--max-model-len", str(inputs.max_model_len),
            "--dtype", _TORCH_DTYPE[inputs.dtype],
            *inputs.feature_args,
        ]

    @staticmethod
    def _common_env(inputs: EngineInputs) -> list[dict[str, str]]:
        # No EFA in a single-node serving pod; without this the runtime looks for EFA affinity and warns (and on
        # trn2 fails to start: quickstart-deploy-dlc.rst).
        env = _env(NEURON_SKIP_EFA_AFFINITY=1)
        if inputs.local_model:
            # The weights are on disk before the engine starts (init container), so neither a compile miss nor a
            # hit needs the Hub; offline mode makes an accidental Hub call fail at once instead of hanging.
            env += _env(HF_HUB_OFFLINE=1)
        return env

    def launch(self, inputs: EngineInputs) -> EngineLaunch:
        if uses_vllm_plugin(inputs.family):
            return self._launch_plugin(inputs)
        return self._launch_nxdi(inputs)

    def _launch_nxdi(self, inputs: EngineInputs) -> EngineLaunch:
        """The NxD Inference vLLM image (inf2, trn1): NxDI vLLM user guide (vllm-user-guide-v1.rst)."""
        args = [*self._common_args(inputs), "--block-size", str(KV_BLOCK_SIZE)]
        if inputs.prefix_caching:
            args += ["--enable-prefix-caching", "--num-gpu-blocks-override", str(self.prefix_cache_blocks(inputs))]
        else:
            # vLLM V1 turns prefix caching on by default; on Neuron it changes the compiled KV layout. Without it
            # NxDI keeps a contiguous KV cache and the plugin overrides the block size to max_model_len (vllm-neuron
            # platform.py), so the 32 above is harmless; the block count must then be exactly max_num_seqs or the
            # scheduler's blocks and the compiled cache disagree: "You must provide num_gpu_blocks_override to avoid
            # out-of-bounds (OOB) errors ... set num_gpu_blocks_override to exactly max_num_seqs"
            # (vllm-user-guide-v1.rst, Known Issues 2).
            args += ["--no-enable-prefix-caching", "--num-gpu-blocks-override", str(inputs.max_num_seqs)]
        if inputs.revision and not inputs.local_model:
            args += ["--revision", inputs.revision]
        neuron_config = self.neuron_config(inputs)
        if neuron_config:
            args += ["--additional-config", json.dumps({"override_neuron_config": neuron_config}, sort_keys=True)]
        # Compiled artifacts (and the quantized checkpoint) on the sized neuron-cache volume, always: where a
        # compile cache is restored, and otherwise where the plugin compiles to, so that a pod's /var/cache/neuron
        # is a complete compile cache to upload (vllm-user-guide-v1.rst, "Loading pre-compiled models").
        env = self._common_env(inputs) + _env(NEURON_COMPILED_ARTIFACTS=COMPILED_ARTIFACTS_DIR)
        if inputs.dtype == "fp8" or inputs.kv_cache_dtype == "fp8":
            # f8e4m3 weights and kv_cache_quant: "you must set the XLA_HANDLE_SPECIAL_SCALAR environment variable to
            # 1" (NxDI feature-guide.rst, "Model Weight Quantization", "KV Cache Quantization"); NxDI's
            # inference_demo.py and the FP8 tutorials (trn2-llama3.3-70b-fp8.rst, trn2-llama3.1-405b-speculative-
            # tutorial.rst) also set UNSAFE_FP8FNCAST=1 so the compiler treats rescaled FP8FN weights as FP8_EXP4.
            env += _env(XLA_HANDLE_SPECIAL_SCALAR=1, UNSAFE_FP8FNCAST=1)
        return EngineLaunch(command=["vllm"], args=args, env=env, health_path="/health", metrics_path="/metrics")

    def _launch_plugin(self, inputs: EngineInputs) -> EngineLaunch:
        """The vLLM Neuron plugin image (trn2, trn3): vllm-neuron docs, migration-nxdi-to-vllm-neuron.md.

        Neuron settings nest under `--additional-config '{"neuron_config": ...}'`; --num-gpu-blocks-override and
        --block-size are dropped ("the plugin sizes the KV cache automatically"); prefix caching is on by default
        and tuned for, so no prefix-caching flag is rendered (`engine.prefixCaching` only shapes NxD Inference; add
        `--no-enable-prefix-caching` to engine.args to turn it off here). FP8 weights come from a calibrated
        checkpoint's quantization_config, with no flag (features-guide.md, "FP8 static weight quantization"), and the
        FP8 KV cache is vLLM's --kv-cache-dtype fp8 (reference-configuration.md, "KV cache options").
        """
        if inputs.dtype == "int8":
            # The Llama 3 recipe lists BF16 and FP8 (static) only (vllm-neuron docs, model-recipes/llama-3.md).
            raise ValueError(
                f"int8 weights on {inputs.family}: the vLLM Neuron plugin there quantizes no weights at load (it "
                "serves bf16 or FP8 from a calibrated checkpoint); use dtype fp8 with an FP8 checkpoint, bf16, or "
                "accelerator.families inf2/trn1 for NxD Inference's int8"
            )
        args = self._common_args(inputs)
        if inputs.kv_cache_dtype == "fp8":
            args += ["--kv-cache-dtype", "fp8"]
        if inputs.revision and not inputs.local_model:
            args += ["--revision", inputs.revision]
        # Nothing the spec says needs a `neuron_config` entry here: the plugin's defaults bucket by max_num_seqs
        # and max_model_len (reference-configuration.md); engine.args can add `--additional-config` for tuning.
        timeout = max(MIN_COMPILATION_TIMEOUT_SECONDS, inputs.compile_timeout_seconds)
        env = self._common_env(inputs) + _env(
            # The plugin's local NEFF cache ($VLLM_CACHE_ROOT/neuron/compile_cache/<hash>, keyed by graph, shapes,
            # versions and target: compilation_cache.md) on the sized neuron-cache volume, where a compile cache
            # from S3 is restored: a restored cache is a warm restart, and a stale shape is a miss, never a hit.
            VLLM_CACHE_ROOT=COMPILED_ARTIFACTS_DIR,
            VLLM_NEURON_COMPILATION_TIMEOUT=timeout,
            # Another rank waits this long for the one compiling a graph (compilation_cache.md, default 600).
            NEURON_LIBTORCH_COMPILATION_TIMEOUT=timeout,
            VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS=EXECUTE_MODEL_TIMEOUT_SECONDS,
        )
        return EngineLaunch(command=["vllm"], args=args, env=env, health_path="/health", metrics_path="/metrics")


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
