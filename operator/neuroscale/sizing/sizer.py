"""Model sizing: pick the Neuron instance and tensor-parallel degree for a model, or explain why it cannot fit."""

from __future__ import annotations

import dataclasses
import math
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
    quantizes_at_load,
)
from neuroscale.sizing.speculation import ASSUMED_ACCEPTANCE_RATE, speculative_estimate
from neuroscale.sizing.throughput import ThroughputEstimate, estimate, load_of


class SizingError(ValueError):
    """A model that cannot be served as asked; the message says why in plain words and how to fix it."""


# The request mix sizing assumes when the spec gives none: a chat turn. Prompts are capped so a request fits
# max_model_len; code and RAG traffic (mostly input) should say so, since prefill costs time.
DEFAULT_PROMPT_TOKENS = 1024
DEFAULT_OUTPUT_TOKENS = 256

# Device-plugin resources (NEURON.md "Kubernetes integration"; aws-neuron-sdk deploy/includes/
# k8s-neuron-device-plugin.rst): `neuron` allocates whole devices with all their cores, `neuroncore` single cores, so
# replicas smaller than a device request cores and several share one. A pod needing more than one core or device
# gets a contiguous set from the Neuron scheduler extension (deploy/infrastructure/scheduler-flow.rst, which shows a
# neuroncore request); Karpenter provisions for either since v1.1 (aws/karpenter-provider-aws#6510).
NEURON_DEVICE_RESOURCE = "aws.amazon.com/neuron"
NEURON_CORE_RESOURCE = "aws.amazon.com/neuroncore"


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
    # Mean prompt and generated tokens per request (None: DEFAULT_*, capped to max_model_len).
    prompt_tokens: int | None = None
    output_tokens: int | None = None
    # The slowest acceptable decode, milliseconds per generated token at full batch; None: cost alone decides.
    max_time_per_output_token_ms: float | None = None
    # The fewest and most replicas the deployment runs: packing replicas into a shared instance pays only as far
    # as they fill it, so cost per token is averaged over this range.
    replicas: tuple[int, int] = (1, 1)
    # A speculative-decoding head and LoRA adapter slots sharing the replica's Neuron memory (memory.CoResident).
    co_resident: CoResident | None = None
    acceptance_rate: float = ASSUMED_ACCEPTANCE_RATE

    def workload(self) -> tuple[int, int]:
        """(prompt, output) tokens per request, defaults capped so that one request fits max_model_len."""
        output = self.output_tokens or min(DEFAULT_OUTPUT_TOKENS, max(1, self.max_model_len // 4))
        prompt = self.prompt_tokens or max(1, min(DEFAULT_PROMPT_TOKENS, self.max_model_len - output))
        return prompt, output


@dataclass(frozen=True)
class Placement:
    """How one replica claims Neuron hardware and how many replicas share an instance."""

    resource: str
    count: int
    replicas_per_instance: int

    @property
    def shares_devices(self) -> bool:
        return self.resource == NEURON_CORE_RESOURCE


@dataclass(frozen=True)
class Candidate:
    """One way to serve the model: instance, degree, placement, and what it costs per generated token."""

    instance: InstanceType
    memory: MemoryEstimate
    placement: Placement
    throughput: ThroughputEstimate
    # Instance-hours per million generated tokens, averaged over the replica range (price-free, for ranking).
    instance_hours_per_million: float

    @property
    def tensor_parallel(self) -> int:
        return self.memory.tensor_parallel

    @property
    def cost_per_million(self) -> float | None:
        price = self.instance.price_per_hour
        return None if price is None else price * self.instance_hours_per_million

    def rank(self) -> tuple[bool, float, float, int, str]:
        # Unknown prices last; among them, fewer instance-hours per token (same instance type, so price cancels).
        cost = self.cost_per_million if self.cost_per_million is not None else self.instance_hours_per_million
        return (self.cost_per_million is None, cost, self.throughput.time_per_output_token_seconds,
                self.tensor_parallel, self.instance.name)


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
    # The replica's share of the instance's on-demand price (the whole price when it has the instance alone).
    price_per_hour: float | None
    tokens_per_second: float
    explanation: str
    architecture: ModelArchitecture
    host_memory_gib: float
    padding_gib: float
    placement: Placement
    throughput: ThroughputEstimate
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
    prompt, output = req.workload()
    if prompt < 1 or output < 1 or prompt + output > req.max_model_len:
        raise SizingError(
            f"a request of {prompt} prompt + {output} generated tokens does not fit max_model_len "
            f"{req.max_model_len}; lower the token counts or raise max_model_len"
        )
    low, high = req.replicas
    if not 1 <= low <= high:
        raise SizingError(f"the replica range must satisfy 1 <= min <= max, got {low}..{high}")
    if req.max_time_per_output_token_ms is not None and req.max_time_per_output_token_ms <= 0:
        raise SizingError("the time-per-output-token target must be positive")


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


def placement(instance: InstanceType, tensor_parallel: int, host_gib: float) -> Placement:
    """Whole devices when the replica fills them, else single NeuronCores so that replicas share a device.

    On trn1.32xlarge the device counts are the scheduler extension's 1, 4, 8 or 16, which `allowed_tp` already
    keeps to. Host memory also bounds the replicas an instance holds: each loads its weights through host memory.
    """
    if tensor_parallel < instance.cores_per_device:
        resource, count, fit = NEURON_CORE_RESOURCE, tensor_parallel, instance.neuron_cores // tensor_parallel
    else:
        count = instance.devices_for(tensor_parallel)
        resource, fit = NEURON_DEVICE_RESOURCE, instance.devices // count
    by_host = max(1, math.floor(instance.memory_gib / host_gib))
    return Placement(resource=resource, count=count, replicas_per_instance=min(fit, by_host))


def _instance_hours_per_million(replicas: tuple[int, int], per_instance: int, tokens_per_second: float) -> float:
    """Instance-hours per million tokens, averaged over every replica count in the range: n replicas take
    ceil(n / per_instance) instances, so a shared instance only pays once enough replicas fill it."""
    counts = range(replicas[0], replicas[1] + 1)
    hours = [math.ceil(n / per_instance) / (n * tokens_per_second * 3600) * 1e6 for n in counts]
    return sum(hours) / len(hours)


def _options(arch: ModelArchitecture, req: SizingRequest, instances: Iterable[InstanceType]) -> list[Candidate]:
    """Every (instance, allowed TP) where the model fits, with its placement, throughput and cost."""
    prompt, output = req.workload()
    found = []
    for instance in instances:
        degrees = instance.allowed_tp if req.tensor_parallel is None else (
            (req.tensor_parallel,) if req.tensor_parallel in instance.allowed_tp else ())
        for tp in degrees:
            memory = _estimate(arch, req, instance, tp)
            if not memory.fits:
                continue
            where = placement(instance, tp, memory.host_required_gib)
            load = load_of(arch, tp, req.dtype, req.kv_cache_dtype)
            throughput = estimate(instance, tp, load, batch=req.max_num_seqs, prompt_tokens=prompt,
                                  output_tokens=output)
            if req.co_resident is not None and req.co_resident.speculates:
                throughput = speculative_estimate(instance, tp, load, arch, req.co_resident, batch=req.max_num_seqs,
                                                  prompt_tokens=prompt, output_tokens=output,
                                                  acceptance_rate=req.acceptance_rate)
            found.append(Candidate(instance, memory, where, throughput, _instance_hours_per_million(
                req.replicas, where.replicas_per_instance, throughput.tokens_per_second)))
    return found


def _fast_enough(req: SizingRequest, candidate: Candidate) -> bool:
    target = req.max_time_per_output_token_ms
    return target is None or candidate.throughput.time_per_output_token_seconds * 1e3 <= target


def _cost(candidate: Candidate) -> str:
    """Cost per million generated tokens averaged over the replica range: dollars, or instance-hours unpriced."""
    cost = candidate.cost_per_million
    return f"${cost:.2f}/M tokens" if cost is not None else f"{candidate.instance_hours_per_million:.3f} instance-h/M"


def _describe(candidate: Candidate) -> str:
    return (f"{candidate.instance.name} TP {candidate.tensor_parallel} "
            f"(~{candidate.throughput.tokens_per_second:.0f} tokens/s, {_cost(candidate)})")


def _explain(arch: ModelArchitecture, req: SizingRequest, chosen: Candidate, options: list[Candidate],
             share: float | None) -> str:
    instance, est, where, tput = chosen.instance, chosen.memory, chosen.placement, chosen.throughput
    tp = est.tensor_parallel
    shape = "estimated from the parameter count (GQA, 8 KV heads)" if arch.estimated else "known architecture"
    claim = (f"{_plural(tp, 'NeuronCore')} of a shared device, requested as {where.resource}: {where.count}"
             if where.shares_devices else f"{tp} NeuronCores on {_plural(where.count, 'Neuron device')}")
    lines = [
        f"{arch.name} ({arch.params_billions:g}B parameters, {shape}) in {req.dtype}: "
        f"{instance.name} with TP {tp} ({claim}).",
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
    cost = f", ${share / (tput.tokens_per_second * 3600) * 1e6:.2f} per million tokens" if share is not None else ""
    guide = "; no published figure below TP 8, a rough guide" if tput.extrapolated else ""
    co = req.co_resident
    speculation = (f" with speculative decoding ({co.num_speculative_tokens} tokens proposed per step, acceptance "
                   f"rate assumed {req.acceptance_rate:g})" if co is not None and co.speculates else "")
    lines.append(
        f"Throughput: ~{tput.tokens_per_second:.0f} generated tokens/s per replica (likely {tput.low:.0f}-"
        f"{tput.high:.0f}{guide}) at batch {req.max_num_seqs}{speculation} with {tput.prompt_tokens} prompt + "
        f"{tput.output_tokens} generated tokens per request; ~{tput.time_per_output_token_seconds * 1e3:.0f} ms per "
        f"output token, ~{tput.time_to_first_token_seconds:.2f} s to encode a prompt{cost}"
        + ("" if instance.price_per_hour is not None else " (no public price for this instance)") + "."
    )
    if where.replicas_per_instance > 1:
        price = f" and pays ${share:.2f}/h of its ${instance.price_per_hour}/h" if share is not None else ""
        lines.append(
            f"Packing: {where.replicas_per_instance} replicas fit one {instance.name}; each claims "
            f"1/{where.replicas_per_instance} of it{price}, which holds when replicas (or other pods) fill it."
        )
    lines.append(_why(req, chosen, options))
    return "\n".join(lines)


def _why(req: SizingRequest, chosen: Candidate, options: list[Candidate]) -> str:
    """Why this candidate: cost per generated token, over the replica range, within the latency target."""
    low, high = req.replicas
    over = f"{low} replica" if low == high == 1 else f"{low}-{high} replicas" if low != high else f"{low} replicas"
    fast = [o for o in options if _fast_enough(req, o)]
    why = []
    if req.instance_type is not None:
        why.append(f"{chosen.instance.name} was pinned")
    if req.tensor_parallel is not None:
        why.append(f"TP {req.tensor_parallel} was pinned")
    basis = "lowest instance-hours" if chosen.cost_per_million is None else "lowest cost"
    why.append(f"{basis} per generated token over {over} ({_cost(chosen)}) among "
               f"{_plural(len(fast), 'configuration')} that fit")
    if req.max_time_per_output_token_ms is not None:
        slow = len(options) - len(fast)
        why.append(f"within {req.max_time_per_output_token_ms:g} ms per output token"
                   + (f" ({_plural(slow, 'slower configuration')} left out)" if slow else ""))
    runner_up = next((o for o in sorted(fast, key=Candidate.rank) if o is not chosen), None)
    if runner_up is not None and runner_up.rank() < chosen.rank():
        why.append(f"costs within {COST_TIE:.0%} per token count as equal, and then the lower price per hour wins, "
                   "then the faster decode")
    text = "Why: " + "; ".join(why) + "."
    if runner_up is not None:
        text += f" Next best: {_describe(runner_up)}."
    same = [o for o in options if o.instance is chosen.instance and o.tensor_parallel < chosen.tensor_parallel]
    smaller = [d for d in chosen.instance.allowed_tp if d < chosen.tensor_parallel]
    if smaller and not same and req.tensor_parallel is None:
        text += f" At TP {smaller[-1]} it would not fit."
    return text


# Costs per token this close are one price to an estimate good to RELATIVE_UNCERTAINTY: among them the lowest
# price per hour wins (the smaller commitment, and what one replica really pays), then the faster decode.
COST_TIE = 0.05


def _choose(options: list[Candidate]) -> Candidate:
    best = min(options, key=Candidate.rank)
    if best.cost_per_million is None:
        return best
    close = [o for o in options if o.cost_per_million is not None
             and o.cost_per_million <= best.cost_per_million * (1 + COST_TIE)]
    return min(close, key=lambda o: (o.instance.price_per_hour, o.throughput.time_per_output_token_seconds,
                                      o.rank()))


def size(req: SizingRequest) -> SizingResult:
    """Choose the (instance, TP) with the lowest cost per generated token, averaged over the replica range, among
    those that fit and meet the latency target (unknown prices last); replicas smaller than an instance share it.

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
    options = _options(arch, req, instances)
    if not options:
        raise _no_fit_error(arch, req, instances)
    fast = [o for o in options if _fast_enough(req, o)]
    if not fast:
        quickest = min(options, key=lambda o: o.throughput.time_per_output_token_seconds)
        raise SizingError(
            f"no configuration decodes {arch.name} at batch {req.max_num_seqs} within "
            f"{req.max_time_per_output_token_ms:g} ms per output token; the fastest, {quickest.instance.name} with "
            f"TP {quickest.tensor_parallel}, takes ~{quickest.throughput.time_per_output_token_seconds * 1e3:.0f} ms: "
            "lower max_num_seqs or raise the target"
        )
    chosen = _choose(fast)
    est, where, instance = chosen.memory, chosen.placement, chosen.instance
    share = None if instance.price_per_hour is None else instance.price_per_hour / where.replicas_per_instance
    return SizingResult(
        instance=instance,
        tensor_parallel=est.tensor_parallel,
        neuron_cores=est.tensor_parallel,
        neuron_devices=instance.devices_for(est.tensor_parallel),
        weights_gib=est.weights_gib,
        kv_cache_gib=est.kv_cache_gib,
        overhead_gib=est.overhead_gib,
        required_gib=est.required_gib,
        capacity_gib=est.capacity_gib,
        price_per_hour=share,
        tokens_per_second=chosen.throughput.tokens_per_second,
        explanation=_explain(arch, req, chosen, options, share),
        architecture=arch,
        host_memory_gib=est.host_required_gib,
        padding_gib=est.padding_gib,
        placement=where,
        throughput=chosen.throughput,
        speculator_gib=est.speculator_gib,
        adapters_gib=est.adapters_gib,
    )
