"""How each engine is launched.

Covers: vLLM on NxD Inference (inf2/trn1): serve arguments (TP, batch, length, dtype, the contiguous KV layout's
block size and block count = max_num_seqs), INT8/FP8 weight quantization and the FP8 KV cache through
--additional-config's override_neuron_config (never --quantization) with the quantized checkpoint inside the
compiled artifacts, the FP8 environment, prefix caching (vLLM flags, block count), the compiled-artifacts env;
vLLM on the vLLM Neuron plugin (trn2): its image, no block flags, prefix caching left on, --kv-cache-dtype, its
timeouts and cache root, int8 refused; local weights (offline, no --revision); TGI's launcher arguments and the
shape variables that skip its entrypoint; DJL-LMI's OPTION_* variables; unknown engines.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from neuroscale.render.engines import (
    COMPILED_ARTIFACTS_DIR,
    DjlLmi,
    EngineImages,
    EngineInputs,
    Tgi,
    Vllm,
    get_engine,
)


def make_inputs(**overrides: Any) -> EngineInputs:
    values: dict[str, Any] = {
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "served_model_name": "llama",
        "tensor_parallel": 2,
        "max_num_seqs": 8,
        "max_model_len": 4096,
        "dtype": "bf16",
        "kv_cache_dtype": "auto",
        "prefix_caching": False,
        "compile_cache": False,
    }
    return EngineInputs(**{**values, **overrides})


def flag(args: list[str], name: str) -> str:
    assert args.count(name) == 1, f"{name} appears {args.count(name)} times in {args}"
    return args[args.index(name) + 1]


def neuron_config(args: list[str]) -> dict:
    return json.loads(flag(args, "--additional-config"))["override_neuron_config"]


def env_of(env: list[dict[str, str]]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in env}


def test_vllm_serve_arguments_for_the_contiguous_kv_layout():
    launch = Vllm().launch(make_inputs())
    assert launch.command == ["vllm"]
    assert launch.args[:2] == ["serve", "meta-llama/Llama-3.1-8B-Instruct"]
    assert flag(launch.args, "--tensor-parallel-size") == "2"
    assert flag(launch.args, "--max-num-seqs") == "8"
    assert flag(launch.args, "--max-model-len") == "4096"
    assert flag(launch.args, "--dtype") == "bfloat16"
    assert flag(launch.args, "--port") == "8080"
    # The plugin overrides the block size to max_model_len for the contiguous layout (vllm-neuron platform.py).
    assert flag(launch.args, "--block-size") == "32"
    assert "--no-enable-prefix-caching" in launch.args
    assert "--additional-config" not in launch.args


@pytest.mark.parametrize("max_num_seqs", [1, 8, 32])
def test_vllm_without_prefix_caching_overrides_the_block_count_to_max_num_seqs(max_num_seqs: int):
    # "set num_gpu_blocks_override to exactly max_num_seqs" or out-of-bounds errors (NxDI vLLM user guide,
    # vllm-user-guide-v1.rst, Known Issues 2).
    launch = Vllm().launch(make_inputs(max_num_seqs=max_num_seqs))
    assert flag(launch.args, "--num-gpu-blocks-override") == str(max_num_seqs)


def test_vllm_on_nxdi_keeps_compiled_artifacts_on_the_cache_volume():
    env = env_of(Vllm().launch(make_inputs()).env)
    assert env == {"NEURON_SKIP_EFA_AFFINITY": "1", "NEURON_COMPILED_ARTIFACTS": COMPILED_ARTIFACTS_DIR}


@pytest.mark.parametrize(("dtype", "quantization_dtype"), [("int8", "int8"), ("fp8", "f8e4m3")])
def test_vllm_weight_quantization_goes_through_the_neuron_config(dtype: str, quantization_dtype: str):
    launch = Vllm().launch(make_inputs(dtype=dtype))
    config = neuron_config(launch.args)
    assert config["quantized"] is True
    assert config["quantization_dtype"] == quantization_dtype
    assert config["quantization_type"] == "per_channel_symmetric"
    assert flag(launch.args, "--dtype") == "bfloat16"
    assert "--quantization" not in launch.args
    assert not any("neuron_quant" in arg for arg in launch.args)


@pytest.mark.parametrize("compile_cache", [False, True])
def test_vllm_quantized_checkpoint_lives_inside_the_compiled_artifacts(compile_cache: bool):
    # NxDI raises FileNotFoundError on a compile hit when the quantized checkpoint is missing, then recompiles;
    # inside the artifacts directory it is restored with them (and compiled-in paths match with or without a cache).
    launch = Vllm().launch(make_inputs(dtype="int8", compile_cache=compile_cache))
    path = neuron_config(launch.args)["quantized_checkpoints_path"]
    assert path.startswith(env_of(launch.env)["NEURON_COMPILED_ARTIFACTS"] + "/")


@pytest.mark.parametrize(("dtype", "kv_cache_dtype", "fp8_env"),
                         [("fp8", "auto", True), ("bf16", "fp8", True), ("int8", "fp8", True), ("int8", "auto", False),
                          ("bf16", "auto", False)])
def test_vllm_fp8_sets_the_environment_nxdi_requires(dtype: str, kv_cache_dtype: str, fp8_env: bool):
    # XLA_HANDLE_SPECIAL_SCALAR=1 "must" be set for f8e4m3 weights and kv_cache_quant (NxDI feature guide);
    # UNSAFE_FP8FNCAST=1 as NxDI's inference_demo.py and the FP8 tutorials set it.
    env = env_of(Vllm().launch(make_inputs(dtype=dtype, kv_cache_dtype=kv_cache_dtype)).env)
    expected = {"XLA_HANDLE_SPECIAL_SCALAR": "1", "UNSAFE_FP8FNCAST": "1"}
    assert (expected.items() <= env.items()) is fp8_env
    assert fp8_env or not (expected.keys() & env.keys())


def test_vllm_fp8_kv_cache():
    config = neuron_config(Vllm().launch(make_inputs(kv_cache_dtype="fp8")).args)
    assert config == {"kv_cache_quant": True}


def test_vllm_fp16_has_no_neuron_config():
    launch = Vllm().launch(make_inputs(dtype="fp16"))
    assert flag(launch.args, "--dtype") == "float16"
    assert "--additional-config" not in launch.args


def test_vllm_prefix_caching_uses_vllm_flags_with_enough_blocks_for_every_sequence():
    launch = Vllm().launch(make_inputs(prefix_caching=True, max_model_len=4000, max_num_seqs=4))
    assert "--enable-prefix-caching" in launch.args
    assert "--no-enable-prefix-caching" not in launch.args
    assert flag(launch.args, "--block-size") == "32"
    # The plugin's minimum: ceil(max_model_len / block size) x max_num_seqs.
    assert flag(launch.args, "--num-gpu-blocks-override") == str(125 * 4)
    # The plugin derives the paged layout from these flags; an explicit pa_num_blocks would have to match exactly.
    assert "--additional-config" not in launch.args


def test_vllm_all_neuron_settings_combine_in_one_json_argument():
    launch = Vllm().launch(make_inputs(dtype="fp8", kv_cache_dtype="fp8", prefix_caching=True))
    assert launch.args.count("--additional-config") == 1
    config = neuron_config(launch.args)
    assert config["quantized"] and config["kv_cache_quant"]
    assert "--enable-prefix-caching" in launch.args


def test_vllm_compile_cache_points_at_the_restored_artifacts():
    assert env_of(Vllm().launch(make_inputs(compile_cache=True)).env)["NEURON_COMPILED_ARTIFACTS"] == (
        COMPILED_ARTIFACTS_DIR
    )


@pytest.mark.parametrize("family", ["inf2", "trn1", "trn2"])
def test_vllm_with_local_weights_runs_offline_and_pins_no_revision(family: str):
    launch = Vllm().launch(make_inputs(model="/models/weights", revision="abc123", family=family))
    assert launch.args[1] == "/models/weights"
    assert "--revision" not in launch.args
    assert env_of(launch.env)["HF_HUB_OFFLINE"] == "1"
    hub = Vllm().launch(make_inputs(revision="abc123", family=family))
    assert flag(hub.args, "--revision") == "abc123"
    assert "HF_HUB_OFFLINE" not in env_of(hub.env)


def test_vllm_image_per_family():
    images = EngineImages()
    # The last NxD Inference image (SDK 2.31.1) on inf2/trn1; the vLLM Neuron plugin image (SDK 2.32) on trn2/trn3.
    for family in ("inf2", "trn1", "trn1n"):
        assert images.for_engine("vllm", family).endswith(":0.16.0-neuronx-py312-sdk2.31.1-ubuntu24.04")
    for family in ("trn2", "trn3"):
        assert images.for_engine("vllm", family).endswith(":0.24.0.1.1.0-neuronx-py313-sdk2.32.0-ubuntu24.04")
    assert images.for_engine("tgi", "inf2") == images.tgi


@pytest.mark.parametrize("prefix_caching", [False, True])
def test_vllm_plugin_on_trn2_takes_its_own_flags(prefix_caching: bool):
    launch = Vllm().launch(make_inputs(family="trn2", tensor_parallel=8, prefix_caching=prefix_caching))
    assert launch.args[:2] == ["serve", "meta-llama/Llama-3.1-8B-Instruct"]
    assert flag(launch.args, "--tensor-parallel-size") == "8"
    assert flag(launch.args, "--max-num-seqs") == "8"
    assert flag(launch.args, "--max-model-len") == "4096"
    # The plugin sizes its KV cache and keeps prefix caching on by default (migration-nxdi-to-vllm-neuron.md).
    for absent in ("--block-size", "--num-gpu-blocks-override", "--enable-prefix-caching",
                   "--no-enable-prefix-caching", "--additional-config"):
        assert absent not in launch.args
    env = env_of(launch.env)
    assert env["NEURON_SKIP_EFA_AFFINITY"] == "1"
    assert env["VLLM_CACHE_ROOT"] == COMPILED_ARTIFACTS_DIR
    assert env["VLLM_EXECUTE_MODEL_TIMEOUT_SECONDS"] == "1200"
    assert "NEURON_COMPILED_ARTIFACTS" not in env
    assert "XLA_HANDLE_SPECIAL_SCALAR" not in env


def test_vllm_plugin_compilation_timeout_is_the_compile_budget_never_below_the_tutorials():
    assert env_of(Vllm().launch(make_inputs(family="trn2", compile_timeout_seconds=5400)).env)[
        "VLLM_NEURON_COMPILATION_TIMEOUT"] == "5400"
    short = env_of(Vllm().launch(make_inputs(family="trn2", compile_timeout_seconds=300)).env)
    assert short["VLLM_NEURON_COMPILATION_TIMEOUT"] == short["NEURON_LIBTORCH_COMPILATION_TIMEOUT"] == "1200"


def test_vllm_plugin_fp8_comes_from_the_checkpoint_and_the_kv_cache_from_vllm():
    launch = Vllm().launch(make_inputs(family="trn2", dtype="fp8", kv_cache_dtype="fp8"))
    assert flag(launch.args, "--kv-cache-dtype") == "fp8"
    assert "--additional-config" not in launch.args
    assert "--quantization" not in launch.args


def test_vllm_plugin_refuses_int8():
    with pytest.raises(ValueError, match="int8 weights on trn2.*inf2/trn1"):
        Vllm().launch(make_inputs(family="trn2", dtype="int8"))


def test_tgi_starts_the_launcher_with_compiled_shapes_in_its_environment():
    launch = Tgi().launch(make_inputs(tensor_parallel=8, max_num_seqs=4, max_model_len=4096, dtype="fp16",
                                      compile_cache=True))
    assert launch.command == ["text-generation-launcher"]
    assert flag(launch.args, "--model-id") == "meta-llama/Llama-3.1-8B-Instruct"
    assert flag(launch.args, "--port") == "8080"
    env = env_of(launch.env)
    assert env["HF_NUM_CORES"] == "8"
    assert env["HF_AUTO_CAST_TYPE"] == "fp16"
    assert env["MAX_BATCH_SIZE"] == "4"
    assert env["MAX_TOTAL_TOKENS"] == "4096"
    assert int(env["MAX_INPUT_TOKENS"]) < 4096
    assert env["MAX_BATCH_PREFILL_TOKENS"] == str(int(env["MAX_INPUT_TOKENS"]) * 4)
    assert env["NEURON_COMPILE_CACHE_URL"] == COMPILED_ARTIFACTS_DIR
    assert launch.health_path == "/health"


def test_djl_lmi_is_configured_through_option_variables():
    launch = DjlLmi().launch(make_inputs(tensor_parallel=8, max_num_seqs=4, max_model_len=2048))
    assert launch.command == ["/usr/bin/djl-serving"]
    env = env_of(launch.env)
    assert env["HF_MODEL_ID"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert env["OPTION_ENTRYPOINT"] == "djl_python.transformers_neuronx"
    assert env["OPTION_ROLLING_BATCH"] == "auto"
    assert env["TENSOR_PARALLEL_DEGREE"] == "8"
    assert env["OPTION_MAX_ROLLING_BATCH_SIZE"] == "4"
    assert env["OPTION_N_POSITIONS"] == "2048"
    assert env["SERVING_PROMETHEUS"] == "true"
    assert (launch.health_path, launch.metrics_path) == ("/ping", "/server/metrics")


def test_unknown_engine_is_a_clear_error():
    assert get_engine("tgi").name == "tgi"
    with pytest.raises(ValueError, match="supported: vllm, tgi, djl-lmi"):
        get_engine("triton")
