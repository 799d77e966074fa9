"""Host CPU, memory, /dev/shm, scratch disk and the startup budget of one replica, derived from its sizing."""

from __future__ import annotations

import math
from dataclasses import dataclass

from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.render.drain import Drain, drain_for
from neuroscale.render.quantities import canonical_quantity, gibibytes, parse_quantity
from neuroscale.sizing.memory import GIB, quantizes_at_load
from neuroscale.sizing.sizer import NEURON_CORE_RESOURCE, NEURON_DEVICE_RESOURCE, SizingResult

# The Neuron taint's key, and the whole-device resource.
NEURON_RESOURCE = NEURON_DEVICE_RESOURCE

# Room left on the node for the kubelet, containerd, kube-proxy, the VPC CNI, the Neuron device plugin and
# neuron-monitor: 10% of the instance plus 1 vCPU and 2 GiB (EKS reserves ~6% of the first core and 255 MiB +
# 11 MiB per pod for the kubelet alone; the DaemonSets need the rest).
RESERVED_FRACTION = 0.10
RESERVED_CPU = 1
RESERVED_MEMORY_GIB = 2

# /dev/shm for the engine's worker processes: an eighth of the pod's memory, 1–10 GiB (AWS examples use 1–10).
SHM_MIN_GIB, SHM_MAX_GIB = 1, 10

# Startup budget (the kubelet must never kill a replica that is still loading or compiling). Published: Llama-3-8B
# (~15 GiB) loads in 10 min 40 s on inf2.8xlarge; compiling a ~15 GB model takes ~15 min and large models 30–60
# min (NEURON.md "Compile cache and cold start"). The per-GiB rates below cover those with margin.
LOAD_BASE_SECONDS = 300
LOAD_SECONDS_PER_GIB = 40
COMPILE_BASE_SECONDS = 900
COMPILE_SECONDS_PER_GIB = 60
STARTUP_PROBE_PERIOD_SECONDS = 10
# A hung start is still caught eventually: no budget exceeds six hours.
MAX_STARTUP_SECONDS = 6 * 3600


@dataclass(frozen=True)
class ReplicaResources:
    """What one replica requests, in canonical Kubernetes quantities."""

    cpu: str
    memory: str
    # aws.amazon.com/neuron (whole devices) or aws.amazon.com/neuroncore (cores of a device replicas share).
    neuron_resource: str
    neuron_count: int
    shm: str
    models_disk: str
    compile_cache_disk: str
    ephemeral_storage: str
    startup_seconds: int
    drain: Drain

    def requests(self) -> dict[str, str]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "ephemeral-storage": self.ephemeral_storage,
            self.neuron_resource: str(self.neuron_count),
        }

    def limits(self) -> dict[str, str]:
        # No CPU limit: throttling a tokenizer or scheduler thread only adds latency. Memory is capped at the
        # request so the pod is never the one the kernel's OOM killer picks on a crowded node.
        return {"memory": self.memory, self.neuron_resource: str(self.neuron_count)}


def _share(sizing: SizingResult) -> float:
    """The fraction of the instance's Neuron devices (or cores, for replicas sharing a device) this replica claims."""
    where, instance = sizing.placement, sizing.instance
    capacity = instance.neuron_cores if where.resource == NEURON_CORE_RESOURCE else instance.devices
    return where.count / capacity


def derived_cpu(sizing: SizingResult) -> int:
    usable = sizing.instance.vcpu * (1 - RESERVED_FRACTION) - RESERVED_CPU
    return max(1, math.floor(usable * _share(sizing)))


def derived_memory_gib(sizing: SizingResult) -> int:
    """The replica's share of host memory, raised to what loading the weights needs when the node has it."""
    usable = sizing.instance.memory_gib * (1 - RESERVED_FRACTION) - RESERVED_MEMORY_GIB
    share = math.floor(usable * _share(sizing))
    needed = math.ceil(sizing.host_memory_gib)
    return max(1, share, min(needed, math.floor(usable)))


def _loaded_gib(sizing: SizingResult) -> float:
    """What a replica loads and compiles: the model, and a speculative head and LoRA adapters next to it (both are
    compiled into the same graph: "both the target and the draft model compile", vllm-neuron EAGLE3 tutorial)."""
    return sizing.weights_gib + sizing.speculator_gib + sizing.adapters_gib


def compile_seconds(sizing: SizingResult) -> int:
    """Seconds compiling the model may take (the engine's compilation timeout on trn2 is this budget)."""
    return math.ceil(COMPILE_BASE_SECONDS + COMPILE_SECONDS_PER_GIB * _loaded_gib(sizing))


def startup_seconds(spec: ModelDeploymentSpec, sizing: SizingResult) -> int:
    """Seconds a replica may take to serve: load plus compile, with or without a compile cache: the pod template is
    the same on a hit and a miss (render/compile_cache.py), and the replica that misses must live to upload."""
    weights = _loaded_gib(sizing)
    budget = LOAD_BASE_SECONDS + LOAD_SECONDS_PER_GIB * weights + COMPILE_BASE_SECONDS + COMPILE_SECONDS_PER_GIB * weights
    if spec.autoscaling is not None and spec.autoscaling.cold_start_seconds is not None:
        budget = max(budget, spec.autoscaling.cold_start_seconds * 1.5)
    return min(MAX_STARTUP_SECONDS, math.ceil(budget / STARTUP_PROBE_PERIOD_SECONDS) * STARTUP_PROBE_PERIOD_SECONDS)


def replica_resources(spec: ModelDeploymentSpec, sizing: SizingResult) -> ReplicaResources:
    """Requests for one replica; spec.resources overrides CPU and memory (normalized to canonical form)."""
    cpu = canonical_quantity(spec.resources.cpu) if spec.resources.cpu else str(derived_cpu(sizing))
    if spec.resources.memory:
        memory = canonical_quantity(spec.resources.memory)
        memory_gib = max(1, math.floor(parse_quantity(memory)[0] / 2**30))
    else:
        memory_gib = derived_memory_gib(sizing)
        memory = gibibytes(memory_gib)
    shm_gib = min(SHM_MAX_GIB, max(SHM_MIN_GIB, memory_gib // 8))
    # The checkpoint lands on the models volume (with room for half of it again); compiled artifacts, which with
    # sharded checkpoints reach the size of the weights, on the cache volume. Quantizing at load reads a
    # full-precision checkpoint (taken as bf16) and writes the quantized one next to the compiled artifacts
    # (engines.Vllm.quantized_checkpoints_path).
    quantized = quantizes_at_load(spec.model.dtype, sizing.instance.family)
    checkpoint_gib = sizing.architecture.params_billions * 1e9 * 2 / GIB if quantized else sizing.weights_gib
    # The speculative head and the LoRA adapters are downloaded onto the same volume.
    models_gib = math.ceil(checkpoint_gib * 1.5 + sizing.speculator_gib + sizing.adapters_gib) + 10
    cache_gib = math.ceil(sizing.weights_gib) * (2 if quantized else 1) + 10
    return ReplicaResources(
        cpu=cpu,
        memory=memory,
        neuron_resource=sizing.placement.resource,
        neuron_count=sizing.placement.count,
        shm=gibibytes(shm_gib),
        models_disk=gibibytes(models_gib),
        compile_cache_disk=gibibytes(cache_gib),
        ephemeral_storage=gibibytes(models_gib + cache_gib),
        startup_seconds=startup_seconds(spec, sizing),
        drain=drain_for(spec.model.max_model_len, sizing.tokens_per_second, spec.batching.max_num_seqs),
    )
