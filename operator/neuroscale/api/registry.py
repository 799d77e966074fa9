"""Every kind neuroscale serves, in one list: the CRD generator and the operator both read it."""

from __future__ import annotations

from neuroscale.api.crds import Kind, _column
from neuroscale.api.cachetier import CacheTier, CacheTierSpec, CacheTierStatus
from neuroscale.api.inferencecascade import InferenceCascade, InferenceCascadeSpec, InferenceCascadeStatus
from neuroscale.api.modeldeployment import ModelDeployment, ModelDeploymentSpec, ModelDeploymentStatus

MODEL_DEPLOYMENT = Kind(
    kind="ModelDeployment",
    plural="modeldeployments",
    spec=ModelDeploymentSpec,
    status=ModelDeploymentStatus,
    short_names=("md", "mdeploy"),
    description=ModelDeployment.__doc__ or "",
    printer_columns=(
        _column("Model", ".spec.model.source"),
        _column("Instance", ".status.sizing.instanceType"),
        _column("TP", ".status.sizing.tensorParallelDegree", "integer"),
        _column("Ready", ".status.readyReplicas", "integer"),
        _column("Desired", ".status.desiredReplicas", "integer"),
        _column("$/h", ".status.costPerHour", "number", priority=1, description="On-demand cost of the replicas"),
        _column("Tok/s", ".status.autoscaling.observedTokensPerSecond", "number", priority=1),
    ),
    scale={
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    },
)

INFERENCE_CASCADE = Kind(
    kind="InferenceCascade",
    plural="inferencecascades",
    spec=InferenceCascadeSpec,
    status=InferenceCascadeStatus,
    short_names=("ic", "cascade"),
    description=InferenceCascade.__doc__ or "",
    printer_columns=(
        _column("Model", ".status.modelName"),
        _column("Endpoint", ".status.endpoint"),
        _column("Tiers", ".status.conditions[?(@.type==\"TiersReady\")].status", description="Every tier ready"),
        _column("Ready", ".status.readyReplicas", "integer"),
        _column("Cache", ".spec.cacheTierRef.name", priority=1),
    ),
)

CACHE_TIER = Kind(
    kind="CacheTier",
    plural="cachetiers",
    spec=CacheTierSpec,
    status=CacheTierStatus,
    short_names=("ct", "cache"),
    description=CacheTier.__doc__ or "",
    printer_columns=(
        _column("Mode", ".spec.mode"),
        _column("Backend", ".status.backend"),
        _column("Endpoint", ".status.endpoint"),
        _column("TTL", ".spec.ttlSeconds", "integer", priority=1, description="Seconds an answer stays cached"),
        _column("MiB", ".spec.maxMemoryMB", "integer", priority=1, description="Size bound"),
    ),
)

KINDS: tuple[Kind, ...] = (MODEL_DEPLOYMENT, INFERENCE_CASCADE, CACHE_TIER)
