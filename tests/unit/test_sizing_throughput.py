"""Covers the decode throughput model: it lands within 10% of the published optimum-neuron figures it was
calibrated on (Llama-3.1-8B on 8 inf2 cores, Llama-3.3-70B on 24 inf2 cores) and within 20% of the older trn1
figure, grows with batch size but less than linearly, speeds up with more cores and lighter weights, and feeds
the autoscaler default (tokens_per_second at full batch) and cost per million tokens."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuroscale.sizing import CATALOG, SizingRequest, decode_tokens_per_second, size


def _tokens_per_second(model: str, instance: str, tp: int, batch: int) -> float:
    req = SizingRequest(model, instance_type=instance, tensor_parallel=tp, max_num_seqs=batch, max_model_len=4096)
    return size(req).tokens_per_second


# NEURON.md "Published output throughput" (optimum-neuron benchmarks, 2025-06), sequence length 4096.
@pytest.mark.parametrize(
    ("model", "tp", "batch", "published"),
    [
        ("llama-3.1-8b", 8, 1, 83),
        ("llama-3.1-8b", 8, 8, 320),
        ("llama-3.1-8b", 8, 32, 510),
        ("llama-3.3-70b", 24, 1, 29),
        ("llama-3.3-70b", 24, 4, 75),
        ("llama-3.3-70b", 24, 8, 104),
    ],
)
def test_calibrated_on_published_inf2_figures(model: str, tp: int, batch: int, published: float) -> None:
    assert _tokens_per_second(model, "inf2.48xlarge", tp, batch) == pytest.approx(published, rel=0.10)


def test_close_to_the_older_trn1_figure() -> None:
    # Llama-3-8B, trn1.32xlarge, TP 32, batch 8: 1,143 tokens/s (Neuron SDK 2.18 benchmarks).
    assert _tokens_per_second("llama-3-8b", "trn1.32xlarge", 32, 8) == pytest.approx(1143, rel=0.20)


@given(st.integers(min_value=1, max_value=63))
def test_batching_helps_but_sublinearly(batch: int) -> None:
    small = _tokens_per_second("llama-3.1-8b", "inf2.48xlarge", 8, batch)
    big = _tokens_per_second("llama-3.1-8b", "inf2.48xlarge", 8, batch + 1)
    assert small < big < small * (batch + 1) / batch


def test_more_cores_decode_faster() -> None:
    rates = [_tokens_per_second("llama-3.1-8b", "inf2.48xlarge", tp, 8) for tp in (2, 4, 8, 24)]
    assert rates == sorted(rates)
    assert rates[-1] > 2 * rates[0]


def test_weight_bytes_dominate_at_batch_one() -> None:
    inst = CATALOG["inf2.48xlarge"]
    common = {"instance": inst, "tensor_parallel": 8, "batch": 1, "layers": 32, "active_params": 8e9,
              "kv_bytes_per_sequence": 0.0}
    bf16 = decode_tokens_per_second(weight_bytes=16e9, **common)
    fp8 = decode_tokens_per_second(weight_bytes=8e9, **common)
    assert 1.3 < fp8 / bf16 < 2.0


def test_trn2_is_faster_per_core_than_inf2() -> None:
    inf2 = _tokens_per_second("llama-3.1-8b", "inf2.48xlarge", 8, 8)
    trn2 = _tokens_per_second("llama-3.1-8b", "trn2.48xlarge", 8, 8)
    assert trn2 > 1.5 * inf2


def test_mixture_of_experts_decodes_like_its_active_size() -> None:
    mixtral = _tokens_per_second("mixtral-8x7b", "inf2.48xlarge", 24, 8)
    llama_70b = _tokens_per_second("llama-3.3-70b", "inf2.48xlarge", 24, 8)
    assert mixtral > 2 * llama_70b


def test_result_throughput_is_at_full_batch() -> None:
    result = size(SizingRequest("llama-3.1-8b", instance_type="inf2.48xlarge", tensor_parallel=8, max_num_seqs=32))
    assert result.tokens_per_second == pytest.approx(_tokens_per_second("llama-3.1-8b", "inf2.48xlarge", 8, 32))
    assert f"at batch 32, ${result.cost_per_million_tokens:.2f} per million tokens" in result.explanation
