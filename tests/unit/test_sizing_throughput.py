"""Covers the throughput model's shape (tests/unit/test_sizing_calibration.py holds it to the published figures):
batching helps but less than linearly, more cores and lighter weights decode faster, prompts cost time (a
prompt-heavy mix serves fewer generated tokens/s), trn2 beats inf2 per core, MoE decodes like its active size, the
uncertainty band widens below the calibrated TPs, and sizing reports the estimate at full batch with its band."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuroscale.sizing import CATALOG, SizingRequest, get_architecture, size
from neuroscale.sizing.throughput import RELATIVE_UNCERTAINTY, estimate, load_of


def _estimate(model: str, instance: str, tp: int, batch: int, prompt: int = 1024, output: int = 256,
              dtype: str = "bf16"):
    load = load_of(get_architecture(model), tp, dtype, "auto")  # type: ignore[arg-type]
    return estimate(CATALOG[instance], tp, load, batch=batch, prompt_tokens=prompt, output_tokens=output)


@given(st.integers(min_value=1, max_value=63))
def test_batching_helps_but_sublinearly(batch: int) -> None:
    small = _estimate("llama-3.1-8b", "inf2.48xlarge", 8, batch).tokens_per_second
    big = _estimate("llama-3.1-8b", "inf2.48xlarge", 8, batch + 1).tokens_per_second
    assert small < big < small * (batch + 1) / batch


def test_more_cores_decode_faster() -> None:
    steps = [_estimate("llama-3.1-8b", "inf2.48xlarge", tp, 8).time_per_output_token_seconds for tp in (2, 4, 8, 24)]
    assert steps == sorted(steps, reverse=True)
    assert steps[0] > 2 * steps[-1]


def test_lighter_weights_decode_faster_at_batch_one() -> None:
    bf16 = _estimate("llama-3.1-8b", "inf2.48xlarge", 2, 1).time_per_output_token_seconds
    fp8 = _estimate("llama-3.1-8b", "inf2.48xlarge", 2, 1, dtype="fp8").time_per_output_token_seconds
    assert 1.3 < bf16 / fp8 < 2.0


def test_prompts_cost_time() -> None:
    chat = _estimate("llama-3.1-8b", "trn1.32xlarge", 32, 8, prompt=512, output=512)
    rag = _estimate("llama-3.1-8b", "trn1.32xlarge", 32, 8, prompt=3584, output=512)
    assert rag.time_to_first_token_seconds > 5 * chat.time_to_first_token_seconds
    assert rag.tokens_per_second < 0.8 * chat.tokens_per_second


def test_trn2_is_faster_per_core_than_inf2() -> None:
    inf2 = _estimate("llama-3.1-8b", "inf2.48xlarge", 8, 8).tokens_per_second
    trn2 = _estimate("llama-3.1-8b", "trn2.48xlarge", 8, 8).tokens_per_second
    assert trn2 > 1.4 * inf2


def test_mixture_of_experts_decodes_like_its_active_size() -> None:
    mixtral = _estimate("mixtral-8x7b", "inf2.48xlarge", 24, 8).tokens_per_second
    llama_70b = _estimate("llama-3.3-70b", "inf2.48xlarge", 24, 8).tokens_per_second
    assert mixtral > 2 * llama_70b


def test_uncertainty_widens_where_nothing_was_published() -> None:
    calibrated = _estimate("llama-3.1-8b", "inf2.48xlarge", 8, 8)
    extrapolated = _estimate("llama-3.1-8b", "inf2.48xlarge", 2, 8)
    assert calibrated.relative_uncertainty == RELATIVE_UNCERTAINTY and not calibrated.extrapolated
    assert extrapolated.relative_uncertainty > RELATIVE_UNCERTAINTY and extrapolated.extrapolated
    assert calibrated.low < calibrated.tokens_per_second < calibrated.high


def test_result_throughput_is_at_full_batch_with_its_band() -> None:
    result = size(SizingRequest("llama-3.1-8b", instance_type="inf2.48xlarge", tensor_parallel=8, max_num_seqs=32))
    expected = _estimate("llama-3.1-8b", "inf2.48xlarge", 8, 32)
    assert result.tokens_per_second == pytest.approx(expected.tokens_per_second)
    assert f"likely {expected.low:.0f}-{expected.high:.0f}" in result.explanation
    assert "at batch 32 with 1024 prompt + 256 generated tokens per request" in result.explanation
    assert f"${result.cost_per_million_tokens:.2f} per million tokens" in result.explanation


def test_the_request_mix_reaches_the_estimate() -> None:
    chat = size(SizingRequest("llama-3.1-8b", instance_type="trn1.32xlarge", tensor_parallel=32))
    rag = size(SizingRequest("llama-3.1-8b", instance_type="trn1.32xlarge", tensor_parallel=32, prompt_tokens=3500,
                             output_tokens=200))
    assert rag.tokens_per_second < chat.tokens_per_second
    assert rag.throughput.prompt_tokens == 3500 and rag.throughput.output_tokens == 200
