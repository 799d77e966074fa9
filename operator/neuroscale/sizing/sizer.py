"""Model sizing: pick the Neuron instance and tensor-parallel degree for a model, or explain why it cannot fit."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass

from neuroscale.sizing.architectures import (
    ModelArchitecture,
    generic_architecture,
    get_architecture,
    infer_architecture,
)
from neuroscale.sizing.catalog import CATALOG, FAMILY_TP, InstanceType, get_instance
from neuroscale.sizing.memory import (
    BYTES_PER_PARAM,
    HOST_PROCESS_GIB,
    CoResident,
    KV_BYTES,
    Dtype,
    KvCacheDtype,
    MemoryEstimate,
    estimate_memory,
    kv_bytes_per_token,
    padding_bytes,
    quantizes_at_load,
)
from neuroscale.sizing.speculation import ASSUMED_ACCEPTANCE_RATE, speculative_tokens_per_second
from neuroscale.sizing.throughput import decode_tokens_per_second


class SizingError(ValueError):
    """A model that cannot be served as asked; the message says why in plain words and how to fix it."""


@dataclass(frozen=True)
class SizingRequest:
    """What the user asked for: a model and, optionally, pinned choices."""

    source: str
    params_billions: float | None = None
    architecture: str | None = None
    dtype: Dtype = "bf16"
    kv_cache_dtype: KvCacheDtype = "auto"
    max_model_len: int = 4096
    max_num_seqs: int = 8
    instance_type: str | None = None
    tensor_parallel: int | None = None
    # Restrict the search to these instance families (e.g. the NodePools a cluster has); empty means all.
    families: tuple[str, ...] = ()
    # A speculative-decoding head and LoRA adapter slots sharing the replica's Neuron memory (memory.CoResident).
    co_resident: CoResident | None = None
    acceptance_rate: float = ASSUMED_ACCEPTANCE_RATE


@dataclass(frozen=True)
class SizingResult:
    """The chosen instance and degree for one replica, with the memory and throughput estimates behind it."""

    instance: InstanceType
    tensor_parallel: int
    neuron_cores: int
    neuron_devices: int
    weights_gib: float
    kv_cache_gib: float
    overhead_gib: float
    required_gib: float
    capacity_gib: float
    price_per_hour: float | None
    tokens_per_second: float
    explanation: str
    architecture: ModelArchitecture
    host_memory_gib: float
    padding_gib: float
    speculator_gib: float = 0.0
    adapters_gib: float = 0.0

    @property
    def cost_per_million_tokens(self) -> float | None:
        """Dollars per million generated tokens at full batch; None when the instance price is unknown."""
        if self.price_per_hour is None:
            return None
        return self.price_per_hour / (self.tokens_per_second * 3600) * 1e6


def resolve_architecture(req: SizingRequest) -> ModelArchitecture:
    """The model shape: named explicitly, recognised in the source, or estimated from the parameter count.

    An explicit parameter count overrides a recognised model's own (a pruned or extended variant keeps the shape).
    """
    if req.architecture:
        try:
            arch = get_architecture(req.architecture)
        except ValueError as err:
            raise SizingError(str(err)) from None
    else:
        arch = infer_architecture(req.source)
    if arch is None:
        if req.params_billions is None:
            raise SizingError(
                f"cannot tell the size of {req.source!r}: it names no known model; pass the parameter count "
                "(--params-billions, e.g. 8) or a known architecture"
            )
        return generic_architecture(req.params_billions)
    if req.params_billions is not None and req.params_billions != arch.params_billions:
        return dataclasses.replace(arch, params_billions=req.params_billions)
    return arch


def _validate(req: SizingRequest) -> None:
    if not req.source.strip():
        raise SizingError("the model source is empty; give e.g. hf://meta-llama/Llama-3.1-8B-Instruct")
    if req.params_billions is not None and req.params_billions <= 0:
        raise SizingError(f"params_billions must be positive, got {req.params_billions}")
    if req.dtype not in BYTES_PER_PARAM:
        raise SizingError(f"unknown dtype {req.dtype!r}; use one of {', '.join(BYTES_PER_PARAM)}")
    if req.kv_cache_dtype not in KV_BYTES:
        raise SizingError(f"unknown KV-cache dtype {req.kv_cache_dtype!r}; use one of {', '.join(KV_BYTES)}")
    if req.max_model_len < 1 or req.max_num_seqs < 1:
        raise SizingError("max_model_len and max_num_seqs must be at least 1")
    unknown = sorted(set(req.families) - set(FAMILY_TP))
    if unknown:
        raise SizingError(f"unknown instance families {unknown}; use some of {', '.join(FAMILY_TP)}")


def _estimate(arch: ModelArchitecture, req: SizingRequest, instance: InstanceType, tp: int) -> MemoryEstimate:
    return estimate_memory(
        arch,
        instance,
        tp,
        dtype=req.dtype,
        kv_cache_dtype=req.kv_cache_dtype,
        max_model_len=req.max_model_len,
        max_num_seqs=req.max_num_seqs,
        co_resident=req.co_resident,
    )


def _smallest_fit(
    arch: ModelArchitecture, req: SizingRequest, instance: InstanceType, degrees: Iterable[int]
) -> MemoryEstimate | None:
    for tp in degrees:
        est = _estimate(arch, req, instance, tp)
        if est.fits:
            return est
    return None


def _price_key(candidate: tuple[InstanceType, MemoryEstimate]) -> tuple[bool, float, int, str]:
    instance, est = candidate
    price = instance.price_per_hour
    return (price is None, price or 0.0, est.tensor_parallel, instance.name)


def _candidates(
    arch: ModelArchitecture, req: SizingRequest, instances: Iterable[InstanceType]
) -> list[tuple[InstanceType, MemoryEstimate]]:
    """Per instance, the smallest allowed degree (or the requested one) at which the model fits."""
    found = []
    for instance in instances:
        if req.tensor_parallel is None:
            degrees: tuple[int, ...] = instance.allowed_tp
        elif req.tensor_parallel in instance.allowed_tp:
            degrees = (req.tensor_parallel,)
        else:
            degrees = ()
        est = _smallest_fit(arch, req, instance, degrees)
        if est is not None:
            found.append((instance, est))
    return found


def _searchable(req: SizingRequest) -> list[InstanceType]:
    return [i for i in CATALOG.values() if not req.families or i.family in req.families]


def _suggestion(arch: ModelArchitecture, req: SizingRequest) -> str:
    """The cheapest fit without the user's pins, or what to change when nothing fits at all."""
    free = dataclasses.replace(req, instance_type=None, tensor_parallel=None, families=())
    candidates = _candidates(arch, free, CATALOG.values())
    if candidates:
        instance, est = min(candidates, key=_price_key)
        return f"smallest fit: {instance.name} with TP {est.tensor_parallel}"
    return (
        "no Neuron instance fits it as asked; use fp8 or int8 weights (--dtype), an fp8 KV cache, fewer "
        "concurrent sequences (--max-num-seqs) or a shorter --max-model-len"
    )


def _misfit(arch: ModelArchitecture, req: SizingRequest, instance: InstanceType, est: MemoryEstimate) -> str:
    what = f"{arch.name} in {req.dtype}"
    if not est.fits_device:
        return (
            f"{what} needs ~{est.required_gib:.0f} GiB of Neuron memory at TP {est.tensor_parallel} "
            f"(weights {est.weights_gib + est.padding_gib:.0f}, KV cache {est.kv_cache_gib:.0f}, runtime "
            f"{est.overhead_gib:.0f}"
            + (f", speculator {est.speculator_gib:.0f}" if est.speculator_gib else "")
            + (f", LoRA slots {est.adapters_gib:.0f}" if est.adapters_gib else "")
            + f"); {instance.name} has {est.capacity_gib:.0f} GiB on "
            f"{est.tensor_parallel} cores; {_suggestion(arch, req)}"
        )
    return (
        f"{instance.name} has {instance.memory_gib} GiB of host memory but loading {what} needs "
        f"~{est.host_required_gib:.0f} GiB ({_host_load(req, instance, est)} + {HOST_PROCESS_GIB:.0f} GiB "
        f"for the serving process); {_suggestion(arch, req)}"
    )


def _host_load(req: SizingRequest, instance: InstanceType, est: MemoryEstimate) -> str:
    loaded = est.host_required_gib - HOST_PROCESS_GIB
    if quantizes_at_load(req.dtype, instance.family):
        return f"{loaded:.0f} GiB for the fp32 model NxD Inference quantizes to {req.dtype} at load"
    return f"{loaded:.0f} GiB of weights"


def _no_fit_error(arch: ModelArchitecture, req: SizingRequest, instances: list[InstanceType]) -> SizingError:
    if req.instance_type is not None:
        instance = instances[0]
        if req.tensor_parallel is not None and req.tensor_parallel not in instance.allowed_tp:
            return SizingError(
                f"TP {req.tensor_parallel} is not possible on {instance.name}: allowed degrees are "
                f"{', '.join(map(str, instance.allowed_tp))} ({instance.family} compiles for "
                f"{', '.join(map(str, FAMILY_TP[instance.family]))}, within {instance.neuron_cores} cores); "
                "pick one of those or leave TP unset"
            )
        tp = req.tensor_parallel or instance.allowed_tp[-1]
        return SizingError(_misfit(arch, req, instance, _estimate(arch, req, instance, tp)))
    if req.tensor_parallel is not None:
        offering = [i for i in instances if req.tensor_parallel in i.allowed_tp]
        if not offering:
            return SizingError(
                f"no instance{' in ' + '/'.join(req.families) if req.families else ''} runs TP "
                f"{req.tensor_parallel}; allowed degrees: "
                + "; ".join(f"{f} {', '.join(map(str, d))}" for f, d in FAMILY_TP.items())
            )
        biggest = max(offering, key=lambda i: (i.memory_gib, i.hbm_per_core_gib))
        return SizingError(_misfit(arch, req, biggest, _estimate(arch, req, biggest, req.tensor_parallel)))
    largest = max(instances, key=lambda i: (i.allowed_tp[-1] * i.hbm_per_core_gib, i.memory_gib))
    scope = f" among {'/'.join(req.families)} instances" if req.families else ""
    return SizingError(
        f"nothing fits{scope}: "
        + _misfit(arch, req, largest, _estimate(arch, req, largest, largest.allowed_tp[-1]))
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _explain(
    arch: ModelArchitecture,
    req: SizingRequest,
    instance: InstanceType,
    est: MemoryEstimate,
    tokens_per_second: float,
    cost_per_million: float | None,
) -> str:
    tp = est.tensor_parallel
    shape = "estimated from the parameter count (GQA, 8 KV heads)" if arch.estimated else "known architecture"
    lines = [
        f"{arch.name} ({arch.params_billions:g}B parameters, {shape}) in {req.dtype}: "
        f"{instance.name} with TP {tp} ({tp} NeuronCores on {_plural(instance.devices_for(tp), 'Neuron device')}).",
        f"Memory: weights {est.weights_gib:.1f} GiB + KV cache {est.kv_cache_gib:.1f} GiB "
        f"({req.max_num_seqs} sequences x {req.max_model_len} tokens) + runtime {est.overhead_gib:.1f} GiB"
        + (f" + head padding {est.padding_gib:.1f} GiB" if est.padding_gib else "")
        + (f" + speculator {est.speculator_gib:.1f} GiB" if est.speculator_gib else "")
        + (f" + LoRA slots {est.adapters_gib:.1f} GiB" if est.adapters_gib else "")
        + f" = {est.required_gib:.1f} of {est.capacity_gib:.0f} GiB ({est.required_gib / est.capacity_gib:.0%}).",
    ]
    uneven = []
    if est.padded_heads > arch.attention_heads:
        uneven.append(f"{arch.attention_heads} query heads are padded to {est.padded_heads}")
    if est.kv_heads_stored > arch.kv_heads:
        uneven.append(f"{arch.kv_heads} KV heads are replicated to {est.kv_heads_stored}")
    if uneven:
        lines.append(f"At TP {tp}, {' and '.join(uneven)} (counted in the memory above).")
    loading = f" ({_host_load(req, instance, est)})" if quantizes_at_load(req.dtype, instance.family) else ""
    lines.append(
        f"Host memory: ~{est.host_required_gib:.0f} GiB to load{loading}, {instance.memory_gib} GiB available."
    )
    if req.instance_type is not None:
        how = "" if req.tensor_parallel else f"; TP {tp} is the smallest allowed degree that fits on it"
        lines.append(f"{instance.name} was pinned{how}.")
    else:
        smaller = [d for d in instance.allowed_tp if d < tp]
        if smaller:
            lines.append(f"Why TP {tp}: at TP {smaller[-1]} it would not fit.")
        if instance.price_per_hour is not None:
            lines.append(f"Why {instance.name}: the cheapest instance where it fits (${instance.price_per_hour}/h).")
        else:
            lines.append(f"Why {instance.name}: no instance with a public price fits.")
    cost = f", ${cost_per_million:.2f} per million tokens" if cost_per_million is not None else ""
    co = req.co_resident
    speculation = (f" with speculative decoding ({co.num_speculative_tokens} tokens proposed per step, acceptance "
                   f"rate assumed {req.acceptance_rate:g})" if co is not None and co.speculates else "")
    lines.append(
        f"Throughput: ~{tokens_per_second:.0f} generated tokens/s at batch {req.max_num_seqs}{speculation}{cost}"
        + ("" if instance.price_per_hour is not None else " (no public price for this instance)")
        + "."
    )
    return "\n".join(lines)


def size(req: SizingRequest) -> SizingResult:
    """Choose, per instance, the smallest allowed TP that fits, then the cheapest such instance (unknown price last).

    Pinned `instance_type` / `tensor_parallel` are validated and kept; a misfit raises SizingError with a fix.
    """
    _validate(req)
    arch = resolve_architecture(req)
    if req.instance_type is not None:
        try:
            instances = [get_instance(req.instance_type)]
        except ValueError as err:
            raise SizingError(str(err)) from None
    else:
        instances = _searchable(req)
    candidates = _candidates(arch, req, instances)
    if not candidates:
        raise _no_fit_error(arch, req, instances)
    instance, est = min(candidates, key=_price_key)
    tp = est.tensor_parallel
    weight_bytes = arch.decode_params_billions * 1e9 * BYTES_PER_PARAM[req.dtype] + padding_bytes(arch, tp, req.dtype)
    # Decode runs from the prompt to the full length: on average half of max_model_len is in the cache.
    kv_per_sequence = kv_bytes_per_token(arch, tp, req.kv_cache_dtype) * req.max_model_len / 2
    tokens_per_second = decode_tokens_per_second(
        instance=instance,
        tensor_parallel=tp,
        batch=req.max_num_seqs,
        layers=arch.layers,
        weight_bytes=weight_bytes,
        active_params=arch.decode_params_billions * 1e9,
        kv_bytes_per_sequence=kv_per_sequence,
    )
    if req.co_resident is not None and req.co_resident.speculates:
        tokens_per_second = speculative_tokens_per_second(
            instance=instance, tensor_parallel=tp, batch=req.max_num_seqs, arch=arch, co=req.co_resident,
            weight_bytes=weight_bytes, kv_bytes_per_sequence=kv_per_sequence, acceptance_rate=req.acceptance_rate,
        )
    price = instance.price_per_hour
    cost = price / (tokens_per_second * 3600) * 1e6 if price is not None else None
    return SizingResult(
        instance=instance,
        tensor_parallel=tp,
        neuron_cores=tp,
        neuron_devices=instance.devices_for(tp),
        weights_gib=est.weights_gib,
        kv_cache_gib=est.kv_cache_gib,
        overhead_gib=est.overhead_gib,
        required_gib=est.required_gib,
        capacity_gib=est.capacity_gib,
        price_per_hour=price,
        tokens_per_second=tokens_per_second,
        explanation=_explain(arch, req, instance, est, tokens_per_second, cost),
        architecture=arch,
        host_memory_gib=est.host_required_gib,
        padding_gib=est.padding_gib,
        speculator_gib=est.speculator_gib,
        adapters_gib=est.adapters_gib,
    )
