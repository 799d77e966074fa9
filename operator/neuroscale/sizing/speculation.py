"""Generated tokens/s with speculative decoding: the decode model of throughput.py, run for a verify step and the
head's proposal steps, times the tokens each step is expected to yield at an assumed acceptance rate.

One speculative step of `batch` sequences: the head proposes K tokens per sequence (K of its own decode steps), then
the model verifies the K proposals plus one token of its own in a single step. Reading the weights costs the same
for 1 or K + 1 tokens, which is the whole gain; the per-token work (throughput.py's per-sequence term) is paid K + 1
times. With each proposed token accepted independently with probability a, a step yields on average
(1 - a^(K+1)) / (1 - a) tokens per sequence (Leviathan et al., "Fast Inference from Transformers via Speculative
Decoding", 2023). So

    tokens/s = batch x (1 - a^(K+1)) / (1 - a) / (verify_step(batch x (K + 1) tokens) + K x head_step(batch))

The gain is largest at small batches, where a step is dominated by reading the weights, and shrinks as the batch
grows; at high load it can turn into a loss, which the estimate shows rather than hides.

ASSUMPTION: a = 0.7 unless the spec gives `expectedAcceptanceRate`. AWS's EAGLE3 tutorial for Llama-3.1-8B on Neuron
measured an acceptance rate of 74 % and 3.22 tokens per step at K = 3 (vllm-neuron docs,
tutorial-eagle3-speculative-decoding-llama-3-1.md); the independence formula gives 2.69 there, so at the default
the estimate errs low. Acceptance depends on the head, the traffic and the sampling temperature: measure it with
vLLM's spec-decode metrics and set the field.
"""

from __future__ import annotations

from neuroscale.sizing.architectures import ModelArchitecture
from neuroscale.sizing.catalog import InstanceType
from neuroscale.sizing.memory import CO_RESIDENT_BYTES_PER_PARAM, CoResident
from neuroscale.sizing.throughput import decode_step_seconds

ASSUMED_ACCEPTANCE_RATE = 0.7


def expected_tokens_per_step(acceptance_rate: float, proposed: int) -> float:
    """Mean tokens one verify step yields per sequence: accepted proposals plus the model's own token."""
    if not 0 < acceptance_rate < 1:
        raise ValueError(f"an acceptance rate is between 0 and 1 (exclusive), got {acceptance_rate}")
    return (1 - acceptance_rate ** (proposed + 1)) / (1 - acceptance_rate)


def speculative_tokens_per_second(
    *,
    instance: InstanceType,
    tensor_parallel: int,
    batch: int,
    arch: ModelArchitecture,
    co: CoResident,
    weight_bytes: float,
    kv_bytes_per_sequence: float,
    acceptance_rate: float,
) -> float:
    """Generated tokens/s of one replica running `batch` sequences with the speculator `co` describes."""
    proposed = co.num_speculative_tokens
    verify = decode_step_seconds(
        instance=instance, tensor_parallel=tensor_parallel, batch=batch * (proposed + 1), layers=arch.layers,
        weight_bytes=weight_bytes, active_params=arch.decode_params_billions * 1e9,
        # Every verified token reads its sequence's cache: the per-token work, K + 1 times per sequence.
        kv_bytes_per_sequence=kv_bytes_per_sequence,
    )
    head_kv = kv_bytes_per_sequence * co.speculator_layers / arch.layers
    head_params = co.speculator_params(arch) * 1e9
    head = decode_step_seconds(
        instance=instance, tensor_parallel=tensor_parallel, batch=batch, layers=co.speculator_layers,
        weight_bytes=head_params * CO_RESIDENT_BYTES_PER_PARAM, active_params=head_params,
        kv_bytes_per_sequence=head_kv,
    )
    return batch * expected_tokens_per_step(acceptance_rate, proposed) / (verify + proposed * head)

