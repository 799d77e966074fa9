"""kopf handlers for InferenceCascade: its own triggers, its gateway's children, and the tiers and cache it uses."""

from __future__ import annotations

from typing import Any

import kopf

from neuroscale.api.common import GROUP, VERSION
from neuroscale.controllers import inferencecascade as controller
from neuroscale.handlers.common import LABEL_CASCADE, MANAGED, emitter, plain, run_reconcile
from neuroscale.runtime import OperatorConfig, Runtime

KIND = "InferenceCascade"
RESOURCE = (GROUP, VERSION, "inferencecascades")
REFERENCED = {"ModelDeployment": (GROUP, VERSION, "modeldeployments"), "CacheTier": (GROUP, VERSION, "cachetiers")}
INDEX = "cascade_references"


def _reconcile(namespace: str, name: str, memo: kopf.Memo) -> None:
    runtime: Runtime = memo.runtime
    run_reconcile(KIND, namespace, name, runtime, lambda body: controller.reconcile(
        body, runtime.kube, now=runtime.clock(), emit=emitter(body), image=runtime.config.gateway_image))


def reconcile(namespace: str, name: str, memo: kopf.Memo, **_: Any) -> None:
    """Create, update and resume; and, on a timer, drift correction for anything changed while no event came."""
    _reconcile(namespace, name, memo)


def child_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """A gateway child changed (rollout progress, hand edit, deletion): reconcile its cascade."""
    meta = body.get("metadata", {})
    _reconcile(meta["namespace"], meta["labels"][LABEL_CASCADE], memo)


def cascade_references(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[tuple[str, str, str], str]:
    """Index: (namespace, kind, referenced name) → this cascade, for every ModelDeployment tier and the CacheTier."""
    keys: dict[tuple[str, str, str], str] = {}
    for tier in spec.get("tiers") or ():
        ref = (tier.get("modelDeployment") or {}).get("name") if isinstance(tier, dict) else None
        if isinstance(ref, str):
            keys[(namespace, "ModelDeployment", ref)] = name
    cache = (spec.get("cacheTierRef") or {}).get("name")
    if isinstance(cache, str):
        keys[(namespace, "CacheTier", cache)] = name
    return keys


def referenced_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """A ModelDeployment or CacheTier changed (created, ready, endpoint, deleted): reconcile the cascades using it."""
    meta = body.get("metadata", {})
    index: kopf.Index = kwargs[INDEX]
    for cascade in sorted(set(index.get((meta["namespace"], body.get("kind"), meta["name"]), ()))):
        _reconcile(meta["namespace"], cascade, memo)


def deleted(type: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Delete the gateway's children as soon as the cascade is gone (owner references would, later, too)."""
    if type == "DELETED":
        owner = plain(body)
        controller.delete_children(owner, controller.owned_children(owner["metadata"]["name"]), memo.runtime.kube)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    for on in (kopf.on.resume, kopf.on.create, kopf.on.update):
        on(*RESOURCE, registry=registry)(reconcile)
    kopf.timer(*RESOURCE, id="resync", registry=registry, interval=config.resync_seconds,
               initial_delay=config.resync_seconds, sharp=False)(reconcile)
    labels = {**MANAGED, LABEL_CASCADE: kopf.PRESENT}
    for group, version, plural in (("apps", "v1", "deployments"), ("", "v1", "services"), ("", "v1", "configmaps")):
        kopf.on.event(group, version, plural, labels=labels, registry=registry,
                      id=f"cascade-child-{plural}")(child_changed)
    kopf.index(*RESOURCE, id=INDEX, registry=registry)(cascade_references)
    for kind, resource in REFERENCED.items():
        kopf.on.event(*resource, id=f"cascades-using-{kind.lower()}", registry=registry)(referenced_changed)
    kopf.on.event(*RESOURCE, id="deleted", registry=registry)(deleted)
