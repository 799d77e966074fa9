"""kopf handlers for CacheTier: every trigger funnels into the same idempotent reconcile."""

from __future__ import annotations

import kopf

from neuroscale.controllers import cachetier as controller
from neuroscale.handlers.common import LABEL_CACHE, OwnerKind, emitter, register_owner
from neuroscale.runtime import OperatorConfig

CACHE_TIER = OwnerKind(
    kind=controller.KIND,
    plural="cachetiers",
    child_label=LABEL_CACHE,
    child_resources=(("apps", "v1", "deployments"), ("", "v1", "services")),
    reconcile=lambda body, runtime: controller.reconcile(body, runtime.kube, now=runtime.clock(), emit=emitter(body)),
    children=controller.owned_children,
)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    register_owner(registry, config, CACHE_TIER)
