"""Every kind neuroscale serves, in one list: the CRD generator and the operator both read it."""

from __future__ import annotations

from neuroscale.api.crds import Kind, _column
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

KINDS: tuple[Kind, ...] = (MODEL_DEPLOYMENT,)
