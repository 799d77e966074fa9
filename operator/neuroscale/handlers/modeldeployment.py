"""kopf handlers for ModelDeployment: every trigger funnels into the same idempotent reconcile."""

from __future__ import annotations

import threading

import kopf

from neuroscale.aws.artifacts import S3ArtifactStore
from neuroscale.controllers import modeldeployment as controller
from neuroscale.handlers.common import LABEL_MODEL, OwnerKind, emitter, register_owner
from neuroscale.runtime import OperatorConfig, Runtime

_STORE_LOCK = threading.Lock()


def artifact_store(runtime: Runtime) -> S3ArtifactStore:
    """One S3 client and answer cache per operator process (boto3 is only touched when a spec has a compile cache)."""
    with _STORE_LOCK:
        store = runtime.extras.get("artifact_store")
        if store is None:
            store = runtime.extras["artifact_store"] = S3ArtifactStore(runtime.config.compile_cache_check_seconds)
        return store


MODEL_DEPLOYMENT = OwnerKind(
    kind=controller.KIND,
    plural="modeldeployments",
    child_label=LABEL_MODEL,
    child_resources=(("apps", "v1", "deployments"), ("", "v1", "services"), ("policy", "v1", "poddisruptionbudgets")),
    reconcile=lambda body, runtime: controller.reconcile(body, runtime.kube, now=runtime.clock(), emit=emitter(body),
                                                         artifacts=artifact_store(runtime)),
    children=controller.owned_children,
)
KIND, RESOURCE = MODEL_DEPLOYMENT.kind, MODEL_DEPLOYMENT.resource


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    register_owner(registry, config, MODEL_DEPLOYMENT)
