"""Neuron device and host memory a model needs at a given tensor-parallel degree."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from neuroscale.sizing.architectures import ModelArchitecture
from neuroscale.sizing.catalog import InstanceType

Dtype = Literal["bf16", "fp16", "fp8", "int8"]
KvCacheDtype = Literal["auto", "fp8"]

GIB = 1024**3

# Bytes per weight (NEURON.md "Sizing": 2 for bf16/fp16, 1 for fp8/int8).
BYTES_PER_PARAM: dict[str, int] = {"bf16": 2, "fp16": 2, "fp8": 1, "int8": 1}

# Quantized weights still compute in bf16 and vLLM's "auto" KV cache takes the activation dtype, so only an
# explicit FP8 KV cache (NxDI `kv_cache_quant`, NEURON.md "Quantization") halves it.
KV_BYTES: dict[str, int] = {"auto": 2, "fp8": 1}

# Runtime margin on device memory: the Neuron runtime keeps per-core room for the compiled program (NEFF),
# activations/scratchpad and collective-communication buffers, none of which scale to zero. A fraction of the
# model state plus a fixed amount per core; with it the published deployments in NEURON.md fit (Llama-3-8B on
# 2 cores, Llama-3-70B on 16 trn1 / 24 inf2 cores) while one core short of each does not.
RUNTIME_OVERHEAD_FRACTION = 0.10
RUNTIME_OVERHEAD_GIB_PER_CORE = 1.0

# Host memory: unless the checkpoint is pre-sharded, NxD Inference loads it into host memory to shard it, next
# to the Python/torch/vLLM process. This is why AWS serves Llama-3-8B (~15 GiB of bf16 weights) on inf2.8xlarge
# rather than on inf2.xlarge, which has 16 GiB of host memory (NEURON.md "Known mappings", "Cold start").
HOST_PROCESS_GIB = 4.0

# fp8/int8 weights on NxD Inference (the inf2/trn1 image) are quantized when the model compiles: vllm-neuron's NxDI
# loader (`_compile_and_load_model`) calls `save_quantized_state_dict`, whose `generate_quantized_state_dict` runs
# `load_hf_model` = `LlamaForCausalLM.from_pretrained(model_path)` on the CPU with no dtype
# (neuronx-distributed-inference models/application_base.py, models/llama/modeling_llama.py; NEURON.md "Engine
# fidelity findings" 4). NxDI pins transformers 4.57 (setup.py), whose from_pretrained loads "in torch.float (fp32)"
# when no dtype is given, so the host holds the whole model at 4 bytes per parameter before quantizing it.
# ⚠ A real image confirms the transformers version. Sizing takes this worst case (a compile miss) even when a
# restored compile cache holds the quantized checkpoint, since a miss can always happen.
QUANTIZE_LOAD_BYTES_PER_PARAM = 4
QUANTIZED_DTYPES = frozenset({"fp8", "int8"})
# Families served by the vLLM Neuron plugin image (no NxD Inference): its FP8 weights come from a calibrated
# checkpoint and nothing is quantized at load (vllm-neuron features-guide.md "FP8 static weight quantization").
# trn3 is not in the catalog yet.
PLUGIN_FAMILIES = frozenset({"trn2", "trn3"})


def quantizes_at_load(dtype: str, family: str) -> bool:
    """Whether the engine on `family` builds `dtype` weights from a full-precision checkpoint when it starts."""
    return dtype in QUANTIZED_DTYPES and family not in PLUGIN_FAMILIES


def host_load_gib(arch: ModelArchitecture, dtype: Dtype, family: str) -> float:
    """Host memory the weights take while the model loads: the fp32 model when quantizing at load, else the weights."""
    per_param = QUANTIZE_LOAD_BYTES_PER_PARAM if quantizes_at_load(dtype, family) else BYTES_PER_PARAM[dtype]
    return arch.params_billions * 1e9 * per_param / GIB


@dataclass(frozen=True)
class MemoryEstimate:
    """Device and host memory for one replica; all sizes in GiB."""

    tensor_parallel: int
    weights_gib: float
    padding_gib: float
    kv_cache_gib: float
    overhead_gib: float
    capacity_gib: float
    host_required_gib: float
    host_capacity_gib: float
    padded_heads: int
    kv_heads_stored: int

    @property
    def required_gib(self) -> float:
        return self.weights_gib + self.padding_gib + self.kv_cache_gib + self.overhead_gib

    @property
    def fits_device(self) -> bool:
        return self.required_gib <= self.capacity_gib

    @property
    def fits_host(self) -> bool:
        return self.host_required_gib <= self.host_capacity_gib

    @property
    def fits(self) -> bool:
        return self.fits_device and self.fits_host


def padded_heads(arch: ModelArchitecture, tensor_parallel: int) -> int:
    """Query heads after padding to a multiple of TP (Neuron pads instead of rejecting uneven splits)."""
    return math.ceil(arch.attention_heads / tensor_parallel) * tensor_parallel


def stored_kv_heads(arch: ModelArchitecture, tensor_parallel: int) -> int:
    """KV heads held across all cores: each core keeps at least one, so TP > kv_heads replicates them."""
    return math.ceil(arch.kv_heads / tensor_parallel) * tensor_parallel


def kv_bytes_per_token(arch: ModelArchitecture, tensor_parallel: int, kv_cache_dtype: KvCacheDtype) -> int:
    """KV-cache bytes one token occupies over all cores, replicated heads included."""
    return 2 * arch.layers * stored_kv_heads(arch, tensor_parallel) * arch.head_dim * KV_BYTES[kv_cache_dtype]


def padding_bytes(arch: ModelArchitecture, tensor_parallel: int, dtype: Dtype) -> int:
    """Extra weight bytes from padded Q/O projections and replicated K/V projections."""
    extra_q = padded_heads(arch, tensor_parallel) - arch.attention_heads
    extra_kv = stored_kv_heads(arch, tensor_parallel) - arch.kv_heads
    per_layer = 2 * (extra_q + extra_kv) * arch.head_dim * arch.hidden_size
    return arch.layers * per_layer * BYTES_PER_PARAM[dtype]


def estimate_memory(
    arch: ModelArchitecture,
    instance: InstanceType,
    tensor_parallel: int,
    *,
    dtype: Dtype,
    kv_cache_dtype: KvCacheDtype,
    max_model_len: int,
    max_num_seqs: int,
) -> MemoryEstimate:
    """Memory of one replica of `arch` on `tensor_parallel` cores of `instance`."""
    weights = arch.params_billions * 1e9 * BYTES_PER_PARAM[dtype] / GIB
    padding = padding_bytes(arch, tensor_parallel, dtype) / GIB
    kv = kv_bytes_per_token(arch, tensor_parallel, kv_cache_dtype) * max_model_len * max_num_seqs / GIB
    overhead = RUNTIME_OVERHEAD_FRACTION * (weights + padding + kv) + RUNTIME_OVERHEAD_GIB_PER_CORE * tensor_parallel
    return MemoryEstimate(
        tensor_parallel=tensor_parallel,
        weights_gib=weights,
        padding_gib=padding,
        kv_cache_gib=kv,
        overhead_gib=overhead,
        capacity_gib=tensor_parallel * instance.hbm_per_core_gib,
        host_required_gib=host_load_gib(arch, dtype, instance.family) + HOST_PROCESS_GIB,
        host_capacity_gib=float(instance.memory_gib),
        padded_heads=padded_heads(arch, tensor_parallel),
        kv_heads_stored=stored_kv_heads(arch, tensor_parallel),
    )
