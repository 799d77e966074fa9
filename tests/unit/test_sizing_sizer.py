"""Covers `size()`: the known mappings in NEURON.md (Llama-3-8B TP 2, on inf2.8xlarge when only inf2 is
allowed because inf2.xlarge's 16 GiB host memory cannot load it; fp8/int8 on NxD Inference needing host memory for
the fp32 model it quantizes at load, trn2 reading FP8 checkpoints; Llama-3.1-70B on 24 inf2 / 16 trn1 cores;
405B on trn2 with no price), the memory formulas (weights, KV cache, dtype effects, KV replication and head
padding past the KV-head count), pinned instance/TP validation, every SizingError message (plain words with a
fix), unknown models with a parameter count, and the result's derived fields (devices, cost per million tokens)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from neuroscale.sizing import CATALOG, KNOWN_ARCHITECTURES, SizingError, SizingRequest, SizingResult, size
from neuroscale.sizing.sizer import Placement

GIB = 1024**3
LLAMA_8B = "hf://meta-llama/Meta-Llama-3-8B-Instruct"
LLAMA_70B = "hf://meta-llama/Llama-3.1-70B-Instruct"
LLAMA_405B = "hf://meta-llama/Llama-3.1-405B-Instruct"


def make_request(**overrides: Any) -> SizingRequest:
    fields: dict[str, Any] = {"source": LLAMA_8B}
    fields.update(overrides)
    return SizingRequest(**fields)


def test_llama3_8b_needs_two_cores() -> None:
    result = size(make_request())
    assert result.tensor_parallel == 2
    assert result.neuron_cores == 2 and result.neuron_devices == 1
    # trn1.2xlarge has the same 2 cores / 32 GiB HBM / 32 GiB host and costs less than inf2.8xlarge.
    assert result.instance.name == "trn1.2xlarge"
    assert "At TP 1 it would not fit" in result.explanation


def test_llama3_8b_on_inf2_is_the_8xlarge_not_the_xlarge() -> None:
    result = size(make_request(families=("inf2",)))
    assert (result.instance.name, result.tensor_parallel) == ("inf2.8xlarge", 2)
    assert result.host_memory_gib > CATALOG["inf2.xlarge"].memory_gib
    # inf2.24xlarge at TP 8 comes within a few % per token, for 3.3x the price per hour.
    assert "Next best: inf2.24xlarge TP 8" in result.explanation


def test_pinning_inf2_xlarge_for_8b_explains_host_memory() -> None:
    with pytest.raises(SizingError) as err:
        size(make_request(instance_type="inf2.xlarge"))
    message = str(err.value)
    assert "inf2.xlarge has 16 GiB of host memory" in message
    assert "smallest fit: trn1.2xlarge with TP 2" in message


def test_quantizing_at_load_needs_host_memory_for_the_fp32_model() -> None:
    # NxD Inference quantizes fp8/int8 weights at load from `from_pretrained` with no dtype: fp32 in the
    # transformers 4.57 it pins. int8 Llama-3.1-8B used to land on inf2.xlarge (16 GiB of host memory).
    for dtype in ("int8", "fp8"):
        result = size(make_request(source="hf://meta-llama/Llama-3.1-8B-Instruct", dtype=dtype))
        assert result.instance.name == "inf2.8xlarge"
        assert result.host_memory_gib == pytest.approx(8.03e9 * 4 / GIB + 4)
        assert f"fp32 model NxD Inference quantizes to {dtype} at load" in result.explanation
    bf16 = size(make_request())
    assert bf16.host_memory_gib == pytest.approx(bf16.weights_gib + 4)


def test_pinning_inf2_xlarge_for_int8_8b_explains_the_fp32_load() -> None:
    with pytest.raises(SizingError) as err:
        size(make_request(dtype="int8", instance_type="inf2.xlarge"))
    message = str(err.value)
    assert "inf2.xlarge has 16 GiB of host memory" in message
    assert "GiB for the fp32 model NxD Inference quantizes to int8 at load" in message
    assert "smallest fit: inf2.8xlarge with TP 1" in message


def test_trn2_fp8_weights_come_from_an_fp8_checkpoint() -> None:
    # The vLLM Neuron plugin on trn2 quantizes nothing at load: it reads a calibrated FP8 checkpoint.
    result = size(make_request(source=LLAMA_405B, dtype="fp8"))
    assert result.instance.family == "trn2"
    assert result.host_memory_gib == pytest.approx(result.weights_gib + 4)


def test_small_model_fits_the_cheapest_instance() -> None:
    # One replica pays for its whole instance: the faster TP 2 on the same inf2.xlarge costs less per token.
    result = size(make_request(source="hf://meta-llama/Llama-3.2-1B-Instruct"))
    assert (result.instance.name, result.tensor_parallel) == ("inf2.xlarge", 2)
    assert result.placement == Placement("aws.amazon.com/neuron", 1, 1)


def test_small_replicas_share_a_device_through_neuroncore_requests() -> None:
    # Two replicas: two TP-1 replicas share one inf2.xlarge device, one NeuronCore each (~11 % less per token than
    # two TP-2 replicas on two instances).
    result = size(make_request(source="hf://meta-llama/Llama-3.2-1B-Instruct", replicas=(2, 2)))
    assert (result.instance.name, result.tensor_parallel) == ("inf2.xlarge", 1)
    assert result.placement == Placement("aws.amazon.com/neuroncore", 1, 2)
    assert result.price_per_hour == pytest.approx(CATALOG["inf2.xlarge"].price_per_hour / 2)
    assert "Packing: 2 replicas fit one inf2.xlarge" in result.explanation
    assert "over 2 replicas" in result.explanation
    # Two to eight replicas: odd counts leave half an instance idle, the costs tie, and the faster TP 2 wins.
    mixed = size(make_request(source="hf://meta-llama/Llama-3.2-1B-Instruct", replicas=(2, 8)))
    assert (mixed.tensor_parallel, mixed.placement.resource) == (2, "aws.amazon.com/neuron")
    assert "then the faster decode" in mixed.explanation


def test_packing_is_priced_over_the_replica_range() -> None:
    # TP 8 on inf2.48xlarge packs three replicas; at one replica the whole instance is paid for, so it never wins.
    one = size(make_request(families=("inf2",), replicas=(1, 1)))
    assert one.placement.replicas_per_instance == 1
    assert one.price_per_hour == CATALOG[one.instance.name].price_per_hour


def test_llama_70b_published_mappings() -> None:
    default = size(make_request(source=LLAMA_70B))
    assert (default.instance.name, default.tensor_parallel, default.neuron_devices) == ("inf2.48xlarge", 24, 12)
    # TP 32 serves ~1.7x the tokens/s of TP 16 for the same instance: larger TP pays (TP 16 is the smallest fit).
    on_trn1 = size(make_request(source=LLAMA_70B, instance_type="trn1.32xlarge"))
    assert (on_trn1.tensor_parallel, on_trn1.neuron_devices) == (32, 16)
    assert "Next best: trn1.32xlarge TP 16" in on_trn1.explanation
    at16 = size(make_request(source=LLAMA_70B, instance_type="trn1.32xlarge", tensor_parallel=16))
    assert 1.5 < on_trn1.tokens_per_second / at16.tokens_per_second < 2.0
    # Two replicas fill one instance at TP 16 (8 devices each): then TP 16 is the cheaper way.
    packed = size(make_request(source=LLAMA_70B, instance_type="trn1.32xlarge", replicas=(2, 2)))
    assert (packed.tensor_parallel, packed.placement.replicas_per_instance) == (16, 2)
    # ~148 GB of weights (NEURON.md) is ~131.5 GiB.
    assert default.weights_gib * GIB / 1e9 == pytest.approx(141.2, rel=0.01)


def test_70b_does_not_fit_eight_cores() -> None:
    with pytest.raises(SizingError) as err:
        size(make_request(source=LLAMA_70B, instance_type="inf2.24xlarge"))
    message = str(err.value)
    assert message.startswith("Llama-3.1-70B in bf16 needs ~")
    assert "inf2.24xlarge has 128 GiB on 8 cores" in message
    assert "smallest fit: inf2.48xlarge with TP 24" in message


def test_405b_needs_trn2_and_has_no_price() -> None:
    result = size(make_request(source=LLAMA_405B))
    assert result.instance.name == "trn2.48xlarge"
    assert result.tensor_parallel == 64
    assert result.price_per_hour is None and result.cost_per_million_tokens is None
    assert "no public price" in result.explanation


def test_kv_cache_formula() -> None:
    result = size(make_request(max_model_len=4096, max_num_seqs=8))
    arch = KNOWN_ARCHITECTURES["Llama-3-8B"]
    expected = 2 * arch.layers * arch.kv_heads * arch.head_dim * 2 * 4096 * 8 / GIB
    assert result.kv_cache_gib == pytest.approx(expected)
    assert result.kv_cache_gib == pytest.approx(4.0)
    assert result.weights_gib == pytest.approx(8.03e9 * 2 / GIB)


def test_dtypes_halve_their_part() -> None:
    base = size(make_request(instance_type="inf2.48xlarge", tensor_parallel=8))
    fp8 = size(make_request(instance_type="inf2.48xlarge", tensor_parallel=8, dtype="fp8"))
    kv8 = size(make_request(instance_type="inf2.48xlarge", tensor_parallel=8, kv_cache_dtype="fp8"))
    assert fp8.weights_gib == pytest.approx(base.weights_gib / 2)
    assert fp8.kv_cache_gib == pytest.approx(base.kv_cache_gib)
    assert kv8.kv_cache_gib == pytest.approx(base.kv_cache_gib / 2)
    assert fp8.tokens_per_second > base.tokens_per_second


def test_fp8_weights_let_8b_use_one_core() -> None:
    result = size(make_request(dtype="fp8", kv_cache_dtype="fp8", max_num_seqs=4, tensor_parallel=1))
    assert result.tensor_parallel == 1
    assert result.required_gib <= 16
    assert result.placement.resource == "aws.amazon.com/neuroncore"


def test_a_latency_target_rules_out_slow_configurations() -> None:
    # Two replicas: TP 16 packed two to a trn1.32xlarge is cheapest, but decodes at ~75 ms per token.
    cheap = size(make_request(source=LLAMA_70B, families=("trn1",), replicas=(2, 2)))
    fast = size(make_request(source=LLAMA_70B, families=("trn1",), replicas=(2, 2), max_time_per_output_token_ms=45))
    assert cheap.tensor_parallel == 16 and cheap.throughput.time_per_output_token_seconds * 1e3 > 45
    assert fast.tensor_parallel == 32 and fast.throughput.time_per_output_token_seconds * 1e3 <= 45
    assert "within 45 ms per output token (1 slower configuration left out)" in fast.explanation
    with pytest.raises(SizingError, match="within 1 ms per output token; the fastest"):
        size(make_request(source=LLAMA_70B, max_time_per_output_token_ms=1))


def test_eight_core_8b_replicas_pack_three_to_an_inf2_48xlarge_under_a_latency_target() -> None:
    # optimum-neuron's 8-core Llama-3.1-8B at batch 32 (README fidelity table): cheapest for three replicas held
    # to 40 ms per token; without the target three TP-4 replicas on an inf2.24xlarge are 7 % cheaper per token.
    common = {"source": "hf://meta-llama/Llama-3.1-8B-Instruct", "families": ("inf2",), "max_num_seqs": 32,
              "replicas": (3, 3)}
    held = size(make_request(**common, max_time_per_output_token_ms=40))
    free = size(make_request(**common))
    assert (held.instance.name, held.tensor_parallel, held.placement.replicas_per_instance) == ("inf2.48xlarge", 8, 3)
    assert (free.instance.name, free.tensor_parallel, free.placement.replicas_per_instance) == ("inf2.24xlarge", 4, 3)
    assert free.throughput.time_per_output_token_seconds * 1e3 > 60


def test_trn2_runs_data_parallel_replicas_when_they_fill_it() -> None:
    # AWS: the largest TP for latency, data parallelism for throughput (TP 32 x DP 2 for 70B on trn2).
    alone = size(make_request(source=LLAMA_70B, families=("trn2",)))
    pair = size(make_request(source=LLAMA_70B, families=("trn2",), replicas=(2, 2)))
    assert alone.tensor_parallel == 64
    assert (pair.tensor_parallel, pair.placement.replicas_per_instance) == (32, 2)


def test_kv_heads_are_replicated_past_their_count() -> None:
    at8 = size(make_request(source=LLAMA_70B, instance_type="trn1.32xlarge", tensor_parallel=8, dtype="fp8"))
    at32 = size(make_request(source=LLAMA_70B, instance_type="trn1.32xlarge", tensor_parallel=32, dtype="fp8"))
    assert at8.padding_gib == 0
    assert at32.kv_cache_gib == pytest.approx(at8.kv_cache_gib * 4)
    assert at32.padding_gib > 0
    assert "8 KV heads are replicated to 32" in at32.explanation


def test_query_heads_pad_to_tp() -> None:
    result = size(make_request(source=LLAMA_70B, instance_type="inf2.48xlarge", tensor_parallel=24))
    assert "64 query heads are padded to 72" in result.explanation
    # 8 extra query heads (Q and O) and 16 extra KV heads (K and V), 128 x 8192 each, 80 layers, bf16.
    assert result.padding_gib == pytest.approx(80 * 2 * (8 + 16) * 128 * 8192 * 2 / GIB)


def test_required_is_the_sum_of_its_parts() -> None:
    r = size(make_request(source=LLAMA_70B))
    assert r.required_gib == pytest.approx(r.weights_gib + r.padding_gib + r.kv_cache_gib + r.overhead_gib)
    assert r.capacity_gib == r.tensor_parallel * r.instance.hbm_per_core_gib
    assert r.required_gib <= r.capacity_gib


def test_cost_per_million_tokens() -> None:
    r = size(make_request())
    assert r.price_per_hour is not None
    assert r.cost_per_million_tokens == pytest.approx(r.price_per_hour / (r.tokens_per_second * 3600) * 1e6)
    cheaper = SizingResult(**{**r.__dict__, "tokens_per_second": r.tokens_per_second * 2})
    assert cheaper.cost_per_million_tokens == pytest.approx(r.cost_per_million_tokens / 2)


def test_pinned_tp_is_kept_even_when_a_smaller_one_fits() -> None:
    result = size(make_request(tensor_parallel=8))
    assert result.tensor_parallel == 8
    assert result.instance.name == "inf2.24xlarge"
    assert math.ceil(8 / result.instance.cores_per_device) == result.neuron_devices


def test_tp_not_allowed_on_instance() -> None:
    allowed = r"TP 12 is not possible on inf2.48xlarge: allowed degrees are 1, 2, 4, 8, 24"
    with pytest.raises(SizingError, match=allowed):
        size(make_request(instance_type="inf2.48xlarge", tensor_parallel=12))


def test_tp_no_instance_offers() -> None:
    with pytest.raises(SizingError, match="no instance in trn1 runs TP 4") as err:
        size(make_request(tensor_parallel=4, families=("trn1",)))
    assert "trn1 1, 2, 8, 16, 32" in str(err.value)


def test_pinned_tp_too_small() -> None:
    # 70B fits 8 trn2 cores (24 GiB each), so keep to the 16 GiB-per-core families.
    with pytest.raises(SizingError) as err:
        size(make_request(source=LLAMA_70B, tensor_parallel=8, families=("inf2", "trn1")))
    assert "at TP 8" in str(err.value)
    assert "smallest fit: inf2.48xlarge with TP 24" in str(err.value)


def test_nothing_fits_says_what_to_change() -> None:
    with pytest.raises(SizingError) as err:
        size(make_request(source=LLAMA_405B, max_num_seqs=256, max_model_len=131072))
    message = str(err.value)
    assert message.startswith("nothing fits: Llama-3.1-405B in bf16 needs ~")
    assert "trn2.48xlarge has 1536 GiB on 64 cores" in message
    assert "--max-num-seqs" in message and "--dtype" in message


def test_family_filter_can_exclude_the_only_fit() -> None:
    with pytest.raises(SizingError, match="nothing fits among inf2 instances") as err:
        size(make_request(source=LLAMA_405B, families=("inf2",)))
    assert "smallest fit: trn2.48xlarge with TP 64" in str(err.value)


def test_unknown_model_needs_a_parameter_count() -> None:
    with pytest.raises(SizingError, match="--params-billions"):
        size(make_request(source="s3://acme-models/chat-v7/"))
    result = size(make_request(source="s3://acme-models/chat-v7/", params_billions=13))
    assert result.architecture.estimated
    assert result.architecture.params_billions == 13
    assert "estimated from the parameter count" in result.explanation


def test_parameter_count_overrides_a_known_model() -> None:
    result = size(make_request(params_billions=9.5))
    assert result.architecture.name == "Llama-3-8B"
    assert result.architecture.params_billions == 9.5
    assert result.weights_gib == pytest.approx(9.5e9 * 2 / GIB)


def test_explicit_architecture_wins_over_the_source() -> None:
    result = size(make_request(source="s3://bucket/finetune/", architecture="Qwen2.5-7B"))
    assert result.architecture.name == "Qwen2.5-7B"
    with pytest.raises(SizingError, match="unknown model architecture 'gpt-9'"):
        size(make_request(architecture="gpt-9"))


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"source": "  "}, "source is empty"),
        ({"max_num_seqs": 0}, "at least 1"),
        ({"max_model_len": 0}, "at least 1"),
        ({"params_billions": -1.0}, "positive"),
        ({"dtype": "fp4"}, "unknown dtype 'fp4'"),
        ({"kv_cache_dtype": "int4"}, "unknown KV-cache dtype"),
        ({"families": ("p5",)}, r"unknown instance families \['p5'\]"),
        ({"instance_type": "p5.48xlarge"}, "valid types: inf2.xlarge"),
        ({"max_model_len": 1024, "prompt_tokens": 1000, "output_tokens": 100}, "does not fit max_model_len 1024"),
        ({"replicas": (3, 2)}, "1 <= min <= max"),
        ({"max_time_per_output_token_ms": 0.0}, "must be positive"),
    ],
)
def test_invalid_requests(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(SizingError, match=match):
        size(make_request(**overrides))


def test_sizing_error_is_a_value_error() -> None:
    assert issubclass(SizingError, ValueError)
