"""What every kind's handlers share: labels, Event posting, a locked and measured reconcile, trigger wiring."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import kopf

from neuroscale.api.common import API_VERSION, GROUP, VERSION
from neuroscale.controllers.children import OwnerGone, delete_children
from neuroscale.handlers.periodic import register_periodic
from neuroscale.k8s.client import KubeError
from neuroscale.observability import CHILD_WRITES, RECONCILE_SECONDS, RECONCILES
from neuroscale.runtime import OperatorConfig, Runtime

log = logging.getLogger(__name__)

# (namespace, name, memo) → reconcile that object now.
ReconcileOne = Callable[[str, str, kopf.Memo], None]

MANAGED = {"app.kubernetes.io/managed-by": "neuroscale"}
LABEL_MODEL = "neuroscale.io/model-deployment"
LABEL_CASCADE = "neuroscale.io/inference-cascade"
LABEL_CACHE = "neuroscale.io/cache-tier"


def plain(body: Any) -> dict[str, Any]:
    """A detached deep copy of a kopf body: the pure core gets values, not live views."""
    return copy.deepcopy({k: body[k] for k in body})


def emitter(body: dict[str, Any]) -> Callable[[str, str, str], None]:
    def emit(type_: str, reason: str, message: str) -> None:
        kopf.event(body, type=type_, reason=reason, message=message[:1024])
    return emit


def run_reconcile(
    kind: str, namespace: str, name: str, runtime: Runtime, fn: Callable[[dict[str, Any]], Any]
) -> Any:
    """Reconcile one object under its lock, from a fresh read, with metrics; API failures become a kopf retry.

    Reading the object again (instead of trusting the body of the event that woke us) means a reconcile never
    acts on a status older than the one the previous reconcile wrote, whichever trigger came first.
    """
    started = time.perf_counter()
    with runtime.lock((kind, namespace, name)):
        try:
            body = runtime.kube.get(API_VERSION, kind, namespace, name)
            if body is None:
                return None  # deleted meanwhile: the deletion handler and the garbage collector take over
            outcome = fn(body)
        except OwnerGone as gone:
            log.info("%s; its deletion handler and the garbage collector take over", gone)
            return None
        except KubeError as exc:
            RECONCILES.labels(kind, "error").inc()
            raise kopf.TemporaryError(f"Kubernetes API call failed: {exc}", delay=15) from exc
        finally:
            RECONCILE_SECONDS.labels(kind).observe(time.perf_counter() - started)
    for key, result in getattr(outcome, "applied", {}).items():
        if result != "unchanged":
            CHILD_WRITES.labels(key.split("/", 1)[0], result).inc()
    RECONCILES.labels(kind, "error" if getattr(outcome, "error", None) else "ok").inc()
    return outcome


@dataclass(frozen=True)
class OwnerKind:
    """One kind whose objects own children: how to reconcile one, find it from a child, and name its children."""

    kind: str
    plural: str
    child_label: str  # label on every child naming its owner
    child_resources: tuple[tuple[str, str, str], ...]  # (group, version, plural) of the children to watch
    reconcile: Callable[[dict[str, Any], Runtime], Any]  # the controller, given a fresh body
    children: Callable[[str], Iterable[tuple[str, str, str]]]  # owner name → (apiVersion, kind, name)

    @property
    def resource(self) -> tuple[str, str, str]:
        return (GROUP, VERSION, self.plural)


def register_owner(registry: kopf.OperatorRegistry, config: OperatorConfig, owner: OwnerKind) -> ReconcileOne:
    """Wire every trigger of `owner` to one idempotent reconcile and return it (for kind-specific triggers):

    create, update and resume; a periodic resync (drift made while no event came); any change to a child (rollout
    progress, a hand edit, a deletion: restored at once); and the owner's deletion (children deleted right away —
    owner references make the garbage collector do it too). No trigger needs a finalizer, so an owner deleted while
    the operator is down or uninstalled goes at once.
    """

    def reconcile_one(namespace: str, name: str, memo: kopf.Memo) -> None:
        runtime: Runtime = memo.runtime
        run_reconcile(owner.kind, namespace, name, runtime, lambda body: owner.reconcile(body, runtime))

    def on_change(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
        reconcile_one(namespace, name, memo)

    def on_child(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        meta = body.get("metadata", {})
        reconcile_one(meta["namespace"], meta["labels"][owner.child_label], memo)

    def on_deleted(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        if type == "DELETED":
            gone = plain(body)
            meta = gone["metadata"]
            # Under the reconcile lock: a reconcile that read the owner just before it went finishes its apply
            # first and is then undone here, instead of re-creating children after they were deleted.
            with memo.runtime.lock((owner.kind, meta.get("namespace"), meta["name"])):
                delete_children(gone, owner.children(meta["name"]), memo.runtime.kube)

    for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
        on(*owner.resource, registry=registry, id="reconcile")(on_change)
    register_periodic(registry, owner.resource, id=f"{owner.plural}_resync", interval=config.resync_seconds,
                      initial_delay=config.resync_seconds, run_one=reconcile_one)
    labels = {**MANAGED, owner.child_label: kopf.PRESENT}
    for group, version, plural in owner.child_resources:
        kopf.on.event(group, version, plural, labels=labels, registry=registry,
                      id=f"{owner.plural}-child-{plural}")(on_child)
    kopf.on.event(*owner.resource, id="deleted", registry=registry)(on_deleted)
    return reconcile_one
