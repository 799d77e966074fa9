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
    speculator_gib: float = 0.0
    adapters_gib: float = 0.0

    @property
    def required_gib(self) -> float:
        return (self.weights_gib + self.padding_gib + self.kv_cache_gib + self.overhead_gib + self.speculator_gib
                + self.adapters_gib)

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
    co_resident: CoResident | None = None,
) -> MemoryEstimate:
    """Memory of one replica of `arch` on `tensor_parallel` cores of `instance`, with what shares it (`co_resident`)."""
    weights = arch.params_billions * 1e9 * BYTES_PER_PARAM[dtype] / GIB
    padding = padding_bytes(arch, tensor_parallel, dtype) / GIB
    kv = kv_bytes_per_token(arch, tensor_parallel, kv_cache_dtype) * max_model_len * max_num_seqs / GIB
    co = co_resident or CoResident()
    speculator = speculator_memory_gib(arch, co, tensor_parallel, kv_cache_dtype=kv_cache_dtype,
                                       max_model_len=max_model_len, max_num_seqs=max_num_seqs)
    adapters = adapters_memory_gib(arch, co)
    overhead = (RUNTIME_OVERHEAD_FRACTION * (weights + padding + kv + speculator + adapters)
                + RUNTIME_OVERHEAD_GIB_PER_CORE * tensor_parallel)
    # The speculator's and the adapters' checkpoints pass through host memory on their way to the device too.
    co_host = adapters
    if co.speculates:
        co_host += co.speculator_params(arch) * 1e9 * CO_RESIDENT_BYTES_PER_PARAM / GIB
    return MemoryEstimate(
        tensor_parallel=tensor_parallel,
        weights_gib=weights,
        padding_gib=padding,
        kv_cache_gib=kv,
        overhead_gib=overhead,
        capacity_gib=tensor_parallel * instance.hbm_per_core_gib,
        host_required_gib=host_load_gib(arch, dtype, instance.family) + co_host + HOST_PROCESS_GIB,
        host_capacity_gib=float(instance.memory_gib),
        padded_heads=padded_heads(arch, tensor_parallel),
        kv_heads_stored=stored_kv_heads(arch, tensor_parallel),
        speculator_gib=speculator,
        adapters_gib=adapters,
    )


# --- models that share the replica's Neuron memory: a speculative-decoding head, LoRA adapter slots ---------------

# The speculator and the adapters are kept in bf16 next to the model (NxD Inference copies the target's Neuron
# config for the draft; LoRA weights are served unquantized: feature-guide.rst "Multi-LoRA Serving").
CO_RESIDENT_BYTES_PER_PARAM = 2


@dataclass(frozen=True)
class CoResident:
    """What else one replica keeps in Neuron memory besides the served model."""

    # Speculative decoding: tokens proposed per step (0: none), the head's parameters (None: estimated from the
    # served model, eagle_head_params_billions) and decoder layers (an EAGLE head has one).
    num_speculative_tokens: int = 0
    speculator_params_billions: float | None = None
    speculator_layers: int = 1
    # LoRA: adapters loaded into fixed HBM slots at start-up, every slot sized for `lora_rank` (--max-lora-rank).
    lora_slots: int = 0
    lora_rank: int = 0

    @property
    def speculates(self) -> bool:
        return self.num_speculative_tokens > 0

    def speculator_params(self, arch: ModelArchitecture) -> float:
        """The head's parameters in billions: as given, else estimated from the served model."""
        if self.speculator_params_billions is not None:
            return self.speculator_params_billions
        return eagle_head_params_billions(arch)


def eagle_head_params_billions(arch: ModelArchitecture) -> float:
    """An EAGLE head's size when the user gives none: one decoder layer of the served model, as much again for the
    LM head the head carries (NxD Inference's converted EAGLE checkpoints include the served model's), plus the
    fusion layer (2 x hidden -> hidden) that feeds it the model's hidden state. Llama-3.1-8B: ~0.54B (a converted
    EAGLE v1 head with its 128k-token LM head is ~0.8B, an EAGLE3 head with a 32k draft vocabulary ~0.4B);
    Llama-3.3-70B: ~1.9B (~2.0B)."""
    return 2 * arch.params_billions / arch.layers + 2 * arch.hidden_size**2 / 1e9


def _mlp_width(arch: ModelArchitecture) -> float:
    """The MLP's intermediate width, estimated from the parameter count: per layer, what attention does not take
    is taken as three hidden x width projections. Embeddings are counted in, so it errs wide (Llama-3.1-8B: ~17k for
    a real 14,336; Llama-3.3-70B: ~29.7k for 28,672), which errs towards more memory."""
    attention = 2 * arch.hidden_size * arch.head_dim * (arch.attention_heads + arch.kv_heads)
    return max(arch.hidden_size, (arch.params_billions * 1e9 / arch.layers - attention) / (3 * arch.hidden_size))


def lora_adapter_bytes(arch: ModelArchitecture, rank: int) -> float:
    """Bytes of one adapter of `rank` on every linear layer (q, k, v, o, gate, up, down): r x (in + out) each.

    Llama-3.1-8B at rank 16: ~92 MB here (84 MB at the true MLP width) for the ~170 MB checkpoint the NxD Inference
    guide quotes, and it sizes 23 adapters into 2 GB per core, i.e. ~85 MB each with the linear layer duplicated
    (feature-guide.rst "Maximum number of LoRA adapters supported in device memory"). The default shards the linear
    layer across the TP group (api-guide.rst, lora_shard_linear_layer), so the cores together hold one copy.
    """
    hidden, q_width, kv_width = arch.hidden_size, arch.attention_heads * arch.head_dim, arch.kv_heads * arch.head_dim
    per_layer = (hidden + q_width) * 2 + (hidden + kv_width) * 2 + 3 * (hidden + _mlp_width(arch))
    return rank * per_layer * arch.layers * CO_RESIDENT_BYTES_PER_PARAM


def adapters_memory_gib(arch: ModelArchitecture, co: CoResident) -> float:
    """Device memory of the LoRA slots: every adapter is loaded into HBM at start-up, each slot at the largest rank."""
    return co.lora_slots * lora_adapter_bytes(arch, co.lora_rank) / GIB if co.lora_slots else 0.0


def speculator_memory_gib(
    arch: ModelArchitecture,
    co: CoResident,
    tensor_parallel: int,
    *,
    kv_cache_dtype: KvCacheDtype,
    max_model_len: int,
    max_num_seqs: int,
) -> float:
    """Device memory of the speculative head: its weights plus its own KV cache over its layers, shaped like the
    served model's (an EAGLE head is a decoder layer of it), for every sequence at full length."""
    if not co.speculates:
        return 0.0
    weights = co.speculator_params(arch) * 1e9 * CO_RESIDENT_BYTES_PER_PARAM
    per_layer_kv = kv_bytes_per_token(arch, tensor_parallel, kv_cache_dtype) / arch.layers
    kv = co.speculator_layers * per_layer_kv * max_model_len * max_num_seqs
    return (weights + kv) / GIB
