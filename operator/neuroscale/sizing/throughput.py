"""Prefill and decode time of one replica, and the generated tokens/s it serves, calibrated on AWS's published figures.

A replica serves requests of `prompt` input and `output` generated tokens, `batch` at a time. Neuron's vLLM runs no
chunked prefill (NEURON.md "Other capabilities"), so each prompt is a context-encoding pass that stops decoding
for the whole batch. For one cycle of `batch` requests:

    prefill(prompt) = 2 * active_params * prompt / (tp * core_flops * PREFILL_EFFICIENCY)
                      + weight_bytes / (tp * core_bandwidth * BANDWIDTH_EFFICIENCY) + layers * LAYER_SECONDS
    step(batch, ctx) = weight_bytes / (tp * core_bandwidth * BANDWIDTH_EFFICIENCY)   (stream the weights once)
                      + layers * LAYER_SECONDS                                      (collectives, kernel launches)
                      + batch * ( 2 * active_params / (tp * core_flops * SEQUENCE_EFFICIENCY) + SEQUENCE_SECONDS
                                  + kv_bytes_per_token * ctx / (tp * core_bandwidth * BANDWIDTH_EFFICIENCY) )
    tokens/s = batch * output / (batch * prefill(prompt) + output * step(batch, prompt + output / 2))

The per-layer latency is what the old bandwidth-only model missed: at batch 1 a small model on 24-64 cores spends
most of each step in per-layer work that does not shrink with more cores (Llama-3-8B on 32 trn1 cores: 5.9 ms per
token, of which streaming 8 GB of weights is under 1 ms), which is why it overestimated small models and trn2 by
1.5-2.3x. A per-layer term growing with log2(TP) fitted to zero, so it is not in the model.

The constants are fitted (least squares on log errors, `tests/bench/throughput_calibration.py --fit`) to the rows of
`tests/data/neuron_published_throughput.yaml` (throughput, and at half weight the published time per output token
and unqueued time to first token): 27 published figures from the Neuron SDK decoder benchmarks
(inf2.48xlarge, trn1.32xlarge), optimum-neuron's inf2 benchmarks and the trn2 70B/405B NxD Inference tutorials,
each with its source. The bandwidth efficiency is held at 0.8: left free the fit takes it to ~1.0, a share of peak
HBM bandwidth nothing reaches, because at TP 8-64 the rows cannot tell weight streaming from the per-layer latency;
at TP 1-2, where weight streaming dominates, no row measures it. Every row lands within RELATIVE_UNCERTAINTY of its
published throughput (max 25 %, mean 9 %); below TP 8 the band is widened by EXTRAPOLATION_FACTOR.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuroscale.sizing.architectures import ModelArchitecture
from neuroscale.sizing.catalog import InstanceType
from neuroscale.sizing.memory import BYTES_PER_PARAM, Dtype, KvCacheDtype, kv_bytes_per_token, padding_bytes


@dataclass(frozen=True)
class ThroughputModel:
    """The model's constants (see the module docstring); CALIBRATED holds the fitted ones."""

    bandwidth_efficiency: float
    layer_seconds: float
    sequence_efficiency: float
    sequence_seconds: float
    prefill_efficiency: float


CALIBRATED = ThroughputModel(
    bandwidth_efficiency=0.8,
    layer_seconds=143e-6,
    sequence_efficiency=0.0324,
    sequence_seconds=105e-6,
    prefill_efficiency=0.115,
)

# The largest relative error over the calibration rows, rounded up: a published figure may be this far either side
# of the estimate (tests/unit/test_sizing_calibration.py holds every row to it).
RELATIVE_UNCERTAINTY = 0.30
# No published figure below this degree: estimates there get a band this many times wider.
SMALLEST_CALIBRATED_TP = 8
EXTRAPOLATION_FACTOR = 2.0


@dataclass(frozen=True)
class ModelLoad:
    """What one replica moves and computes: the model as sharded over `tensor_parallel` cores."""

    layers: int
    weight_bytes: float  # weights read per decode step, head padding included
    active_params: float  # parameters each token passes through (the routed experts only, for MoE)
    kv_bytes_per_token: float  # KV cache one token of context occupies, over all cores


@dataclass(frozen=True)
class ThroughputEstimate:
    """Generated tokens/s of one replica at full batch, with its latencies and an uncertainty band."""

    tokens_per_second: float
    time_per_output_token_seconds: float
    time_to_first_token_seconds: float
    relative_uncertainty: float
    batch: int
    prompt_tokens: int
    output_tokens: int

    @property
    def low(self) -> float:
        return self.tokens_per_second / (1 + self.relative_uncertainty)

    @property
    def high(self) -> float:
        return self.tokens_per_second * (1 + self.relative_uncertainty)

    @property
    def extrapolated(self) -> bool:
        return self.relative_uncertainty > RELATIVE_UNCERTAINTY


def load_of(arch: ModelArchitecture, tensor_parallel: int, dtype: Dtype, kv_cache_dtype: KvCacheDtype) -> ModelLoad:
    """The load of `arch` in `dtype` sharded over `tensor_parallel` cores (padded and replicated heads included)."""
    return ModelLoad(
        layers=arch.layers,
        weight_bytes=arch.decode_params_billions * 1e9 * BYTES_PER_PARAM[dtype]
        + padding_bytes(arch, tensor_parallel, dtype),
        active_params=arch.decode_params_billions * 1e9,
        kv_bytes_per_token=kv_bytes_per_token(arch, tensor_parallel, kv_cache_dtype),
    )


def _core_bandwidth(instance: InstanceType) -> float:
    return instance.hbm_bandwidth_gbps * 1e9 / instance.cores_per_device


def _core_flops(instance: InstanceType) -> float:
    return instance.bf16_tflops_per_device * 1e12 / instance.cores_per_device


def prefill_seconds(instance: InstanceType, tensor_parallel: int, load: ModelLoad, prompt_tokens: int,
                    model: ThroughputModel = CALIBRATED) -> float:
    """Seconds to encode one prompt (the time to first token of a request that did not wait)."""
    compute = 2 * load.active_params * prompt_tokens / (
        tensor_parallel * _core_flops(instance) * model.prefill_efficiency)
    weights = load.weight_bytes / (tensor_parallel * _core_bandwidth(instance) * model.bandwidth_efficiency)
    return compute + weights + load.layers * model.layer_seconds


def decode_step_seconds(instance: InstanceType, tensor_parallel: int, load: ModelLoad, batch: int,
                        context_tokens: float, model: ThroughputModel = CALIBRATED) -> float:
    """Seconds for one decode step of `batch` sequences holding `context_tokens` each (the time per output token)."""
    bandwidth = tensor_parallel * _core_bandwidth(instance) * model.bandwidth_efficiency
    per_sequence = (
        2 * load.active_params / (tensor_parallel * _core_flops(instance) * model.sequence_efficiency)
        + model.sequence_seconds
        + load.kv_bytes_per_token * context_tokens / bandwidth
    )
    return load.weight_bytes / bandwidth + load.layers * model.layer_seconds + batch * per_sequence


def estimate(instance: InstanceType, tensor_parallel: int, load: ModelLoad, *, batch: int, prompt_tokens: int,
             output_tokens: int, model: ThroughputModel = CALIBRATED) -> ThroughputEstimate:
    """Generated tokens/s of one replica kept full with `batch` requests of `prompt_tokens` in, `output_tokens` out."""
    prefill = prefill_seconds(instance, tensor_parallel, load, prompt_tokens, model)
    step = decode_step_seconds(instance, tensor_parallel, load, batch, prompt_tokens + output_tokens / 2, model)
    cycle = batch * prefill + output_tokens * step
    uncertainty = RELATIVE_UNCERTAINTY * (EXTRAPOLATION_FACTOR if tensor_parallel < SMALLEST_CALIBRATED_TP else 1)
    return ThroughputEstimate(
        tokens_per_second=batch * output_tokens / cycle,
        time_per_output_token_seconds=step,
        time_to_first_token_seconds=prefill,
        relative_uncertainty=uncertainty,
        batch=batch,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
    )
