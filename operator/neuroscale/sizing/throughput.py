"""A bandwidth-bound decode model: generated tokens per second of one replica, calibrated on published figures.

One decode step generates one token for each of `batch` sequences. Its time is

    step = weight_bytes / (tp * core_bandwidth * BANDWIDTH_EFFICIENCY)                  (stream the weights once)
         + batch * ( 2 * active_params / (tp * core_peak_flops * PER_SEQUENCE_EFFICIENCY)
                     + kv_bytes_per_sequence / (tp * core_bandwidth * BANDWIDTH_EFFICIENCY) )
         + layers * PER_LAYER_SECONDS                                                   (collectives, launches)

and tokens/s = batch / step. The per-sequence term is written as compute but stands for everything the published
numbers show growing with the batch (sampling, attention kernels, host work); its efficiency is low on purpose.

Calibration (least squares on the worst relative error, then rounded): NEURON.md "Published output throughput",
optimum-neuron benchmarks (2025-06): Llama-3.1-8B on 8 inf2 cores 83 / 320 / 510 tokens/s at batch 1 / 8 / 32,
Llama-3.3-70B on 24 inf2 cores 29 / 75 / 104 at batch 1 / 4 / 8 (sequence length 4096). The model lands within
7% of those six figures and 18% under the older SDK 2.18 trn1 figure (Llama-3-8B, TP 32, batch 8: 1,143 tokens/s).
Trainium2 uses the same efficiencies on its own bandwidth and FLOPs: uncalibrated, treat it as a rough guide.
"""

from __future__ import annotations

from neuroscale.sizing.catalog import InstanceType

BANDWIDTH_EFFICIENCY = 0.55
PER_SEQUENCE_EFFICIENCY = 0.013
PER_LAYER_SECONDS = 50e-6


def decode_step_seconds(
    *,
    instance: InstanceType,
    tensor_parallel: int,
    batch: int,
    layers: int,
    weight_bytes: float,
    active_params: float,
    kv_bytes_per_sequence: float,
) -> float:
    """Seconds for one decode step of `batch` sequences (see the module docstring for the model)."""
    core_bandwidth = instance.hbm_bandwidth_gbps * 1e9 / instance.cores_per_device * BANDWIDTH_EFFICIENCY
    core_flops = instance.bf16_tflops_per_device * 1e12 / instance.cores_per_device * PER_SEQUENCE_EFFICIENCY
    weights = weight_bytes / (tensor_parallel * core_bandwidth)
    per_sequence = 2 * active_params / (tensor_parallel * core_flops) + kv_bytes_per_sequence / (
        tensor_parallel * core_bandwidth
    )
    return weights + batch * per_sequence + layers * PER_LAYER_SECONDS


def decode_tokens_per_second(
    *,
    instance: InstanceType,
    tensor_parallel: int,
    batch: int,
    layers: int,
    weight_bytes: float,
    active_params: float,
    kv_bytes_per_sequence: float,
) -> float:
    """Generated tokens per second of one replica running `batch` sequences at once."""
    step = decode_step_seconds(
        instance=instance,
        tensor_parallel=tensor_parallel,
        batch=batch,
        layers=layers,
        weight_bytes=weight_bytes,
        active_params=active_params,
        kv_bytes_per_sequence=kv_bytes_per_sequence,
    )
    return batch / step
