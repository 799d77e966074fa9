"""How each engine is launched.

Covers: vLLM serve arguments (TP, batch, length, dtype, the contiguous KV layout's block size and block count),
INT8/FP8 weight quantization and the FP8 KV cache through --additional-config's override_neuron_config (never
--quantization), prefix caching (vLLM flags, block count), the compile cache env; TGI's launcher arguments and the
shape variables that skip its entrypoint; DJL-LMI's OPTION_* variables; unknown engines.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from neuroscale.render.engines import (
    COMPILED_ARTIFACTS_DIR,
    DjlLmi,
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
    # Without prefix caching NxD Inference sizes its contiguous KV cache itself; vLLM keeps 32-token bookkeeping.
    assert flag(launch.args, "--block-size") == "32"
    assert "--num-gpu-blocks-override" not in launch.args
    assert "--no-enable-prefix-caching" in launch.args
    assert "--additional-config" not in launch.args
    assert env_of(launch.env) == {"NEURON_SKIP_EFA_AFFINITY": "1"}


@pytest.mark.parametrize(("dtype", "quantization_dtype"), [("int8", "int8"), ("fp8", "f8e4m3")])
def test_vllm_weight_quantization_goes_through_the_neuron_config(dtype: str, quantization_dtype: str):
    launch = Vllm().launch(make_inputs(dtype=dtype))
    config = neuron_config(launch.args)
    assert config["quantized"] is True
    assert config["quantization_dtype"] == quantization_dtype
    assert config["quantization_type"] == "per_channel_symmetric"
    assert config["quantized_checkpoints_path"].startswith("/models/")
    assert flag(launch.args, "--dtype") == "bfloat16"
    assert "--quantization" not in launch.args
    assert not any("neuron_quant" in arg for arg in launch.args)


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
