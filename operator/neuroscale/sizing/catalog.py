"""The AWS Neuron instance catalog: hardware, prices and the tensor-parallel degrees each instance can run."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

Family = Literal["inf2", "trn1", "trn1n", "trn2"]
Accelerator = Literal["inferentia2", "trainium", "trainium2"]

# Tensor-parallel degrees the Neuron stacks compile for, per family (NEURON.md "Sizing"; NxD Inference docs).
# On inf2 the degree must also fit the instance's cores, which `allowed_tp` enforces per instance.
FAMILY_TP: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "inf2": (1, 2, 4, 8, 24),
        "trn1": (1, 2, 8, 16, 32),
        "trn1n": (1, 2, 8, 16, 32),
        "trn2": (1, 2, 4, 8, 16, 32, 64),
    }
)

# The Neuron scheduler extension only hands out these contiguous device counts on trn1(n).32xlarge
# (NEURON.md "Kubernetes integration"; aws-neuron-sdk deploy/infrastructure/scheduler*.rst). Elsewhere any
# count up to the instance's devices is schedulable (contiguous devices on the inf2 ring).
SCHEDULABLE_DEVICE_COUNTS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {
        "trn1.32xlarge": (1, 4, 8, 16),
        "trn1n.32xlarge": (1, 4, 8, 16),
    }
)


@dataclass(frozen=True)
class InstanceType:
    """One EC2 instance type with Neuron accelerators, as the sizer and the renderer need it."""

    name: str
    family: Family
    accelerator: Accelerator
    devices: int
    neuron_cores: int
    hbm_gib: int
    hbm_bandwidth_gbps: float
    bf16_tflops_per_device: float
    vcpu: int
    memory_gib: int
    price_per_hour: float | None
    allowed_tp: tuple[int, ...]

    @property
    def cores_per_device(self) -> int:
        return self.neuron_cores // self.devices

    @property
    def hbm_per_core_gib(self) -> float:
        return self.hbm_gib / self.neuron_cores

    def devices_for(self, tensor_parallel: int) -> int:
        """Whole Neuron devices (`aws.amazon.com/neuron`) a pod with this TP degree requests."""
        return math.ceil(tensor_parallel / self.cores_per_device)


def _allowed_tp(name: str, family: str, neuron_cores: int, devices: int) -> tuple[int, ...]:
    cores_per_device = neuron_cores // devices
    schedulable = SCHEDULABLE_DEVICE_COUNTS.get(name, tuple(range(1, devices + 1)))
    return tuple(
        tp
        for tp in FAMILY_TP[family]
        if tp <= neuron_cores and math.ceil(tp / cores_per_device) in schedulable
    )


@dataclass(frozen=True)
class _Chip:
    family: Family
    accelerator: Accelerator
    hbm_bandwidth_gbps: float
    bf16_tflops: float


def _instance(
    name: str,
    chip: _Chip,
    *,
    devices: int,
    neuron_cores: int,
    hbm_gib: int,
    vcpu: int,
    memory_gib: int,
    price_per_hour: float | None,
) -> InstanceType:
    return InstanceType(
        name=name,
        family=chip.family,
        accelerator=chip.accelerator,
        devices=devices,
        neuron_cores=neuron_cores,
        hbm_gib=hbm_gib,
        hbm_bandwidth_gbps=chip.hbm_bandwidth_gbps,
        bf16_tflops_per_device=chip.bf16_tflops,
        vcpu=vcpu,
        memory_gib=memory_gib,
        price_per_hour=price_per_hour,
        allowed_tp=_allowed_tp(name, chip.family, neuron_cores, devices),
    )


# Per-device figures: Inferentia2 and Trainium chips have 32 GiB HBM at 820 GB/s and 190 BF16 TFLOPS
# (aws-neuron-sdk about-neuron/arch/neuron-hardware/inferentia2.rst, trn1-arch.rst: 13,120 GB/s over 16 chips);
# a Trainium2 chip has 96 GiB at 2.9 TB/s and 655 dense BF16 TFLOPS (trainium2.rst).
_INF2 = _Chip("inf2", "inferentia2", hbm_bandwidth_gbps=820.0, bf16_tflops=190.0)
_TRN1 = _Chip("trn1", "trainium", hbm_bandwidth_gbps=820.0, bf16_tflops=190.0)
_TRN1N = _Chip("trn1n", "trainium", hbm_bandwidth_gbps=820.0, bf16_tflops=190.0)
_TRN2 = _Chip("trn2", "trainium2", hbm_bandwidth_gbps=2900.0, bf16_tflops=655.0)

# Rows of NEURON.md "Instance catalog". Prices: on-demand us-east-1 from Karpenter's generated pricing file
# (aws/karpenter-provider-aws pkg/providers/pricing/zz_generated.pricing_aws.go, 2026-01-19).
CATALOG: Mapping[str, InstanceType] = MappingProxyType(
    {
        i.name: i
        for i in (
            _instance("inf2.xlarge", _INF2, devices=1, neuron_cores=2, hbm_gib=32, vcpu=4, memory_gib=16,
                      price_per_hour=0.7582),
            _instance("inf2.8xlarge", _INF2, devices=1, neuron_cores=2, hbm_gib=32, vcpu=32, memory_gib=128,
                      price_per_hour=1.96786),
            _instance("inf2.24xlarge", _INF2, devices=6, neuron_cores=12, hbm_gib=192, vcpu=96, memory_gib=384,
                      price_per_hour=6.49063),
            _instance("inf2.48xlarge", _INF2, devices=12, neuron_cores=24, hbm_gib=384, vcpu=192, memory_gib=768,
                      price_per_hour=12.98127),
            _instance("trn1.2xlarge", _TRN1, devices=1, neuron_cores=2, hbm_gib=32, vcpu=8, memory_gib=32,
                      price_per_hour=1.34375),
            _instance("trn1.32xlarge", _TRN1, devices=16, neuron_cores=32, hbm_gib=512, vcpu=128, memory_gib=512,
                      price_per_hour=21.50),
            _instance("trn1n.32xlarge", _TRN1N, devices=16, neuron_cores=32, hbm_gib=512, vcpu=128,
                      memory_gib=512, price_per_hour=24.78),
            # 128 physical NeuronCore-v3 appear as 64 logical cores with the default LNC=2, 24 GiB each.
            # The price source has no trn2 row, so the price stays unknown rather than guessed.
            _instance("trn2.48xlarge", _TRN2, devices=16, neuron_cores=64, hbm_gib=1536, vcpu=192,
                      memory_gib=2048, price_per_hour=None),
        )
    }
)


def get_instance(name: str) -> InstanceType:
    """The catalog entry for `name`; a ValueError naming the valid instance types otherwise."""
    try:
        return CATALOG[name]
    except KeyError:
        raise ValueError(
            f"unknown Neuron instance type {name!r}; valid types: {', '.join(CATALOG)}"
        ) from None
