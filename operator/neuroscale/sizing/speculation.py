"""Generated tokens/s with speculative decoding: throughput.py's prefill and decode model, run for a verify step and
the head's proposal steps, times the tokens each step is expected to yield at an assumed acceptance rate.

One speculative step of `batch` sequences: the head proposes K tokens per sequence (K of its own decode steps), then
the model verifies the K proposals plus one token of its own in a single step. Reading the weights and the per-layer
work cost the same for 1 or K + 1 tokens, which is the whole gain; the per-token work (throughput.py's per-sequence
term) is paid K + 1 times. With each proposed token accepted independently with probability a, a step yields on
average (1 - a^(K+1)) / (1 - a) tokens per sequence (Leviathan et al., "Fast Inference from Transformers via
Speculative Decoding", 2023). So, per generated token,

    time per output token = (verify_step(batch x (K + 1) tokens) + K x head_step(batch)) / ((1 - a^(K+1)) / (1 - a))

and a prompt is encoded by the model and the head. The gain is largest at small batches, where a step is spent
reading weights and crossing layers, and shrinks as the batch grows; at high load it turns into a loss, which the
estimate shows rather than hides.

ASSUMPTION: a = 0.7 unless the spec gives `expectedAcceptanceRate`. AWS's EAGLE3 tutorial for Llama-3.1-8B on Neuron
measured an acceptance rate of 74 % and 3.22 tokens per step at K = 3 (vllm-neuron docs,
tutorial-eagle3-speculative-decoding-llama-3-1.md); the independence formula gives 2.70 there, so at the default
the estimate errs low. Acceptance depends on the head, the traffic and the sampling temperature: measure it with
vLLM's spec-decode metrics and set the field.
"""

from __future__ import annotations

import dataclasses

from neuroscale.sizing.architectures import ModelArchitecture
from neuroscale.sizing.catalog import InstanceType
from neuroscale.sizing.memory import CO_RESIDENT_BYTES_PER_PARAM, CoResident
from neuroscale.sizing.throughput import (
    ModelLoad,
    ThroughputEstimate,
    decode_step_seconds,
    estimate,
    prefill_seconds,
)

ASSUMED_ACCEPTANCE_RATE = 0.7


def expected_tokens_per_step(acceptance_rate: float, proposed: int) -> float:
    """Mean tokens one verify step yields per sequence: accepted proposals plus the model's own token."""
    if not 0 < acceptance_rate < 1:
        raise ValueError(f"an acceptance rate is between 0 and 1 (exclusive), got {acceptance_rate}")
    return (1 - acceptance_rate ** (proposed + 1)) / (1 - acceptance_rate)


def head_load(load: ModelLoad, arch: ModelArchitecture, co: CoResident) -> ModelLoad:
    """What the speculative head moves and computes: its own weights, and a KV cache over its layers shaped like the
    model's (an EAGLE head is a decoder layer of it)."""
    params = co.speculator_params(arch) * 1e9
    return ModelLoad(
        layers=co.speculator_layers,
        weight_bytes=params * CO_RESIDENT_BYTES_PER_PARAM,
        active_params=params,
        kv_bytes_per_token=load.kv_bytes_per_token * co.speculator_layers / load.layers,
    )


def speculative_estimate(
    instance: InstanceType,
    tensor_parallel: int,
    load: ModelLoad,
    arch: ModelArchitecture,
    co: CoResident,
    *,
    batch: int,
    prompt_tokens: int,
    output_tokens: int,
    acceptance_rate: float,
) -> ThroughputEstimate:
    """throughput.estimate for a replica that speculates with the head `co` describes (same uncertainty band)."""
    plain = estimate(instance, tensor_parallel, load, batch=batch, prompt_tokens=prompt_tokens,
                     output_tokens=output_tokens)
    head = head_load(load, arch, co)
    proposed = co.num_speculative_tokens
    context = prompt_tokens + output_tokens / 2
    verify = decode_step_seconds(instance, tensor_parallel, load, batch * (proposed + 1), context)
    propose = proposed * decode_step_seconds(instance, tensor_parallel, head, batch, context)
    per_token = (verify + propose) / expected_tokens_per_step(acceptance_rate, proposed)
    prefill = plain.time_to_first_token_seconds + prefill_seconds(instance, tensor_parallel, head, prompt_tokens)
    cycle = batch * prefill + output_tokens * per_token
    return dataclasses.replace(plain, tokens_per_second=batch * output_tokens / cycle,
                               time_per_output_token_seconds=per_token, time_to_first_token_seconds=prefill)
