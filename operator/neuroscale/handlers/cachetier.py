"""kopf handlers for CacheTier: every trigger funnels into the same idempotent reconcile."""

from __future__ import annotations

from typing import Any

import kopf

from neuroscale.api.common import GROUP, VERSION
from neuroscale.controllers import cachetier as controller
from neuroscale.controllers.inferencecascade import delete_children
from neuroscale.handlers.common import LABEL_CACHE, MANAGED, emitter, plain, run_reconcile
from neuroscale.render.cachetier import redis_name
from neuroscale.runtime import OperatorConfig, Runtime

KIND = "CacheTier"
RESOURCE = (GROUP, VERSION, "cachetiers")


def _reconcile(namespace: str, name: str, memo: kopf.Memo) -> None:
    runtime: Runtime = memo.runtime
    run_reconcile(KIND, namespace, name, runtime, lambda body: controller.reconcile(
        body, runtime.kube, now=runtime.clock(), emit=emitter(body)))


def reconcile(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    """Create, update and resume; and, on a timer, drift correction for children changed while no event came."""
    _reconcile(namespace, name, memo)


def child_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """The Redis Deployment or Service changed (readiness, hand edit, deletion): reconcile its CacheTier."""
    meta = body.get("metadata", {})
    _reconcile(meta["namespace"], meta["labels"][LABEL_CACHE], memo)


def deleted(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Delete the Redis as soon as the CacheTier is gone (owner references would, later, too)."""
    if type == "DELETED":
        owner = plain(body)
        name = owner["metadata"]["name"]
        delete_children(owner, [(api, kind, redis_name(name)) for api, kind in controller.CHILD_KINDS],
                        memo.runtime.kube)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
        on(*RESOURCE, registry=registry)(reconcile)
    kopf.timer(*RESOURCE, id="resync", registry=registry, interval=config.resync_seconds,
               initial_delay=config.resync_seconds, sharp=False)(reconcile)
    labels = {**MANAGED, LABEL_CACHE: kopf.PRESENT}
    for group, version, plural in (("apps", "v1", "deployments"), ("", "v1", "services")):
        kopf.on.event(group, version, plural, labels=labels, registry=registry,
                      id=f"cache-child-{plural}")(child_changed)
    kopf.on.event(*RESOURCE, id="deleted", registry=registry)(deleted)
