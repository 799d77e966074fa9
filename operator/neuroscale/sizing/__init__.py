"""Neuron instance catalog and model sizing: pure functions from a model request to an instance and TP degree."""

from neuroscale.sizing.architectures import (
    KNOWN_ARCHITECTURES,
    ModelArchitecture,
    generic_architecture,
    get_architecture,
    infer_architecture,
)
from neuroscale.sizing.catalog import CATALOG, FAMILY_TP, SCHEDULABLE_DEVICE_COUNTS, InstanceType, get_instance
from neuroscale.sizing.memory import MemoryEstimate, estimate_memory
from neuroscale.sizing.sizer import SizingError, SizingRequest, SizingResult, resolve_architecture, size
from neuroscale.sizing.throughput import ThroughputEstimate, estimate

__all__ = [
    "CATALOG",
    "FAMILY_TP",
    "KNOWN_ARCHITECTURES",
    "SCHEDULABLE_DEVICE_COUNTS",
    "InstanceType",
    "MemoryEstimate",
    "ModelArchitecture",
    "SizingError",
    "SizingRequest",
    "SizingResult",
    "ThroughputEstimate",
    "estimate",
    "estimate_memory",
    "generic_architecture",
    "get_architecture",
    "get_instance",
    "infer_architecture",
    "resolve_architecture",
    "size",
]
