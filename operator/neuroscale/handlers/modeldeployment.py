"""kopf handlers for ModelDeployment: every trigger funnels into the same idempotent reconcile."""

from __future__ import annotations

import kopf

from neuroscale.controllers import modeldeployment as controller
from neuroscale.handlers.common import LABEL_MODEL, OwnerKind, emitter, register_owner
from neuroscale.runtime import OperatorConfig

MODEL_DEPLOYMENT = OwnerKind(
    kind=controller.KIND,
    plural="modeldeployments",
    child_label=LABEL_MODEL,
    child_resources=(("apps", "v1", "deployments"), ("", "v1", "services"), ("policy", "v1", "poddisruptionbudgets")),
    reconcile=lambda body, runtime: controller.reconcile(body, runtime.kube, now=runtime.clock(), emit=emitter(body)),
    children=controller.owned_children,
)
KIND, RESOURCE = MODEL_DEPLOYMENT.kind, MODEL_DEPLOYMENT.resource


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    register_owner(registry, config, MODEL_DEPLOYMENT)
