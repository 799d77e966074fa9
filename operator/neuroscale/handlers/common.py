"""What every kind's handlers share: labels, Event posting, metrics around a reconcile, owned-child deletion."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import kopf

from neuroscale.api.common import API_VERSION
from neuroscale.k8s.client import KubeClient, KubeError
from neuroscale.observability import CHILD_WRITES, RECONCILE_SECONDS, RECONCILES
from neuroscale.runtime import Runtime

log = logging.getLogger(__name__)

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


def delete_owned(owner: dict[str, Any], kinds: Iterable[tuple[str, str]], kube: KubeClient) -> list[str]:
    """Delete the children named after `owner` that it really owns (matching ownerReference uid)."""
    meta = owner["metadata"]
    deleted = []
    for api_version, kind in kinds:
        child = kube.get(api_version, kind, meta["namespace"], meta["name"])
        if child is None:
            continue
        owners = (child.get("metadata") or {}).get("ownerReferences") or ()
        if any(ref.get("uid") == meta.get("uid") for ref in owners):
            kube.delete(api_version, kind, meta["namespace"], meta["name"])
            deleted.append(f"{kind}/{meta['name']}")
    if deleted:
        log.info("Deleted %s of %s/%s", ", ".join(deleted), meta["namespace"], meta["name"])
    return deleted
