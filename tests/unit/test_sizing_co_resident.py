"""Sizing with a speculative-decoding head and LoRA adapter slots sharing the replica's Neuron memory.

Covers: LoRA adapter sizes against the NxD Inference guide's figures (Llama-3.1-8B and Llama-3.3-70B at rank 16,
and the slot counts its 2 GB-per-core table implies); slots sized at the largest rank; the EAGLE head estimate and
an explicit parameter count; both counted in device and host memory and the explanation, and enough of them
moving a model to a larger instance; the expected tokens per verify step (independent acceptance); the speculative
throughput estimate against AWS's published EAGLE3 run (Llama-3.1-8B, trn2, TP 8, batch 2: 1.57x at a 74 %
acceptance rate), its gain shrinking as the batch grows and turning into a loss at large batches, more acceptance
never estimating less; the assumption named in the explanation; a misfit message naming the slots.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuroscale.sizing.architectures import KNOWN_ARCHITECTURES
from neuroscale.sizing.memory import CoResident, eagle_head_params_billions, lora_adapter_bytes
from neuroscale.sizing.sizer import SizingError, SizingRequest, size
from neuroscale.sizing.speculation import expected_tokens_per_step

LLAMA_8B = KNOWN_ARCHITECTURES["Llama-3.1-8B"]
LLAMA_70B = KNOWN_ARCHITECTURES["Llama-3.3-70B"]
SOURCE_8B = "hf://meta-llama/Llama-3.1-8B-Instruct"


@pytest.mark.parametrize("arch, published_mb", [(LLAMA_8B, 170), (LLAMA_70B, 830)])
def test_adapter_size_matches_the_nxd_inference_guide(arch, published_mb: float) -> None:
    # feature-guide.rst quotes ~170 MB / ~830 MB rank-16 checkpoints and sizes each at about half of that per core
    # (23 adapters of Llama-3.1-8B in 2 GB: ~85 MB each); r x (in + out) in bf16 is that half, within 10 %.
    assert lora_adapter_bytes(arch, 16) / 1e6 == pytest.approx(published_mb / 2, rel=0.10)


def test_adapter_size_grows_with_rank() -> None:
    assert lora_adapter_bytes(LLAMA_8B, 32) == pytest.approx(2 * lora_adapter_bytes(LLAMA_8B, 16))


def test_every_slot_is_sized_for_the_largest_rank() -> None:
    one = size(SizingRequest(SOURCE_8B, families=("inf2",), co_resident=CoResident(lora_slots=1, lora_rank=64)))
    four = size(SizingRequest(SOURCE_8B, families=("inf2",), co_resident=CoResident(lora_slots=4, lora_rank=64)))
    assert four.adapters_gib == pytest.approx(4 * one.adapters_gib)
    assert one.adapters_gib == pytest.approx(lora_adapter_bytes(LLAMA_8B, 64) / 2**30)


def test_eagle_head_estimate_and_override() -> None:
    assert 0.4 < eagle_head_params_billions(LLAMA_8B) < 0.9
    assert 1.5 < eagle_head_params_billions(LLAMA_70B) < 2.5
    assert CoResident(num_speculative_tokens=3, speculator_params_billions=0.25).speculator_params(LLAMA_8B) == 0.25


def test_co_resident_memory_is_counted_and_explained() -> None:
    pinned = {"instance_type": "inf2.8xlarge", "tensor_parallel": 2}
    base = size(SizingRequest(SOURCE_8B, **pinned))
    both = size(SizingRequest(SOURCE_8B, **pinned,
                              co_resident=CoResident(num_speculative_tokens=5, lora_slots=8, lora_rank=16)))
    assert both.speculator_gib > 0.5 and both.adapters_gib > 0.5
    assert both.required_gib == pytest.approx(
        base.required_gib + 1.10 * (both.speculator_gib + both.adapters_gib))  # the runtime margin covers them too
    assert both.host_memory_gib > base.host_memory_gib
    assert "speculator" in both.explanation and "LoRA slots" in both.explanation
    assert base.speculator_gib == base.adapters_gib == 0


def test_enough_adapters_move_the_model_to_a_larger_instance() -> None:
    base = size(SizingRequest(SOURCE_8B, families=("inf2",)))
    crowded = size(SizingRequest(SOURCE_8B, families=("inf2",), co_resident=CoResident(lora_slots=16, lora_rank=512)))
    assert (base.instance.name, base.tensor_parallel) == ("inf2.8xlarge", 2)
    assert crowded.tensor_parallel > base.tensor_parallel


def test_expected_tokens_per_step() -> None:
    assert expected_tokens_per_step(0.5, 1) == pytest.approx(1.5)
    assert expected_tokens_per_step(0.7414, 3) == pytest.approx(2.70, abs=0.01)
    with pytest.raises(ValueError):
        expected_tokens_per_step(1.0, 3)


@given(st.floats(0.01, 0.99), st.integers(1, 16))
def test_a_step_yields_between_one_and_all_proposed_tokens(rate: float, proposed: int) -> None:
    assert 1 <= expected_tokens_per_step(rate, proposed) <= proposed + 1


def trn2_eagle3(batch: int, rate: float = 0.7414) -> tuple[float, float]:
    shape = {"max_num_seqs": batch, "max_model_len": 2048, "instance_type": "trn2.48xlarge", "tensor_parallel": 8}
    base = size(SizingRequest(SOURCE_8B, **shape))
    fast = size(SizingRequest(SOURCE_8B, **shape, co_resident=CoResident(num_speculative_tokens=3),
                              acceptance_rate=rate))
    return base.tokens_per_second, fast.tokens_per_second


def test_speedup_against_the_published_eagle3_run() -> None:
    # vllm-neuron tutorial-eagle3-speculative-decoding-llama-3-1.md: trn2.48xlarge, TP 8, --max-num-seqs 2,
    # --max-model-len 2048, 3 speculative tokens, acceptance rate 74.14 %: output throughput 184.44 -> 288.63 (1.57x).
    base, fast = trn2_eagle3(2)
    assert fast / base == pytest.approx(288.63 / 184.44, rel=0.10)


def test_speedup_shrinks_with_the_batch_and_turns_into_a_loss() -> None:
    ratios = [fast / base for base, fast in (trn2_eagle3(batch) for batch in (1, 2, 8, 32, 128))]
    assert ratios == sorted(ratios, reverse=True)
    assert ratios[0] > 1.4 and ratios[-1] < 1


@given(st.floats(0.05, 0.9))
def test_more_acceptance_never_estimates_less(rate: float) -> None:
    assert trn2_eagle3(4, rate)[1] <= trn2_eagle3(4, rate + 0.05)[1]


def test_the_explanation_states_the_assumed_acceptance() -> None:
    result = size(SizingRequest(SOURCE_8B, families=("inf2",), co_resident=CoResident(num_speculative_tokens=5)))
    assert "5 tokens proposed per step, acceptance rate assumed 0.7" in result.explanation


def test_a_misfit_names_the_co_resident_memory() -> None:
    with pytest.raises(SizingError, match=r"runtime \d+, LoRA slots 44\); inf2.8xlarge has 32 GiB"):
        size(SizingRequest(SOURCE_8B, instance_type="inf2.8xlarge", co_resident=CoResident(lora_slots=16,
                                                                                             lora_rank=512)))
