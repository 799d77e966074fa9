"""kopf handlers for ModelDeployment: every trigger funnels into the same idempotent reconcile."""

from __future__ import annotations

from typing import Any

import kopf

from neuroscale.api.common import GROUP, VERSION
from neuroscale.controllers import modeldeployment as controller
from neuroscale.handlers.common import LABEL_MODEL, MANAGED, delete_owned, emitter, plain, run_reconcile
from neuroscale.runtime import OperatorConfig, Runtime

KIND = "ModelDeployment"
RESOURCE = (GROUP, VERSION, "modeldeployments")
CHILD_KINDS = (("apps/v1", "Deployment"), ("v1", "Service"), ("policy/v1", "PodDisruptionBudget"),
               ("v1", "ServiceAccount"))


def _reconcile(namespace: str, name: str, memo: kopf.Memo) -> None:
    runtime: Runtime = memo.runtime
    run_reconcile(KIND, namespace, name, runtime, lambda body: controller.reconcile(
        body, runtime.kube, now=runtime.clock(), emit=emitter(body)))


def reconcile(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    """Create, update and resume; and, on a timer, drift correction for children changed while no event came."""
    _reconcile(namespace, name, memo)


def child_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A child changed (rollout progress, hand edit, deletion): reconcile its parent."""
    meta = body.get("metadata", {})
    _reconcile(meta["namespace"], meta["labels"][LABEL_MODEL], memo)


def deleted(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Delete the children as soon as the ModelDeployment is gone.

    Owner references make the garbage collector do this too; deleting here as well needs no finalizer, so an
    uninstalled operator never leaves a ModelDeployment stuck in deletion.
    """
    if type == "DELETED":
        delete_owned(plain(body), CHILD_KINDS, memo.runtime.kube)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
        on(*RESOURCE, registry=registry)(reconcile)
    kopf.timer(*RESOURCE, id="resync", registry=registry, interval=config.resync_seconds,
               initial_delay=config.resync_seconds, sharp=False)(reconcile)
    labels = {**MANAGED, LABEL_MODEL: kopf.PRESENT}
    for group, version, plural in (("apps", "v1", "deployments"), ("", "v1", "services"),
                                   ("policy", "v1", "poddisruptionbudgets")):
        kopf.on.event(group, version, plural, labels=labels, registry=registry,
                      id=f"child-{plural}")(child_changed)
    kopf.on.event(*RESOURCE, id="deleted", registry=registry)(deleted)
