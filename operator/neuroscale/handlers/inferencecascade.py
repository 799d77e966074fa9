"""kopf handlers for InferenceCascade: its own triggers, its gateway's children, and the tiers and cache it uses."""

from __future__ import annotations

import time
from typing import Any

import kopf

from neuroscale.api.common import GROUP, VERSION

from neuroscale.controllers import cascade_usage
from neuroscale.controllers import inferencecascade as controller
from neuroscale.handlers.autoscaling import operator_prometheus, shared_source
from neuroscale.handlers.common import LABEL_CASCADE, OwnerKind, emitter, register_owner
from neuroscale.handlers.periodic import register_periodic
from neuroscale.runtime import OperatorConfig, Runtime

REFERENCED = {"ModelDeployment": (GROUP, VERSION, "modeldeployments"), "CacheTier": (GROUP, VERSION, "cachetiers")}
INDEX = "cascade_references"
# Per-tenant usage in status: a day's figures move slowly, and each read is seven Prometheus queries per cascade.
USAGE_INTERVAL_SECONDS = 300.0


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


CASCADE = OwnerKind(
    kind=controller.KIND,
    plural="inferencecascades",
    child_label=LABEL_CASCADE,
    child_resources=(("apps", "v1", "deployments"), ("", "v1", "services"), ("", "v1", "configmaps"),
                     ("policy", "v1", "poddisruptionbudgets")),
    reconcile=lambda body, runtime: controller.reconcile(
        body, runtime.kube, now=runtime.clock(), emit=emitter(body), image=runtime.config.gateway_image),
    children=controller.owned_children,
)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    reconcile_one = register_owner(registry, config, CASCADE)

    def referenced_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
        """A ModelDeployment or CacheTier changed (created, ready, endpoint, deleted): reconcile its cascades."""
        meta = body.get("metadata", {})
        index: kopf.Index = kwargs[INDEX]
        for cascade in sorted(set(index.get((meta["namespace"], body.get("kind"), meta["name"]), ()))):
            reconcile_one(meta["namespace"], cascade, memo)

    kopf.index(*CASCADE.resource, id=INDEX, registry=registry)(cascade_references)
    if config.prometheus_url:
        register_periodic(registry, CASCADE.resource, id="cascade-usage", interval=USAGE_INTERVAL_SECONDS,
                          initial_delay=60.0, run_one=refresh_usage)
    for kind, resource in REFERENCED.items():
        kopf.on.event(*resource, id=f"cascades-using-{kind.lower()}", registry=registry)(referenced_changed)


def refresh_usage(namespace: str, name: str, memo: kopf.Memo) -> None:
    """Read one cascade's per-tenant usage from the operator's Prometheus into its status."""
    runtime: Runtime = memo.runtime
    source = shared_source(runtime, operator_prometheus(runtime.config))
    if source is None:
        return
    with runtime.lock((controller.KIND, namespace, name)):
        body = runtime.kube.get("neuroscale.io/v1alpha1", controller.KIND, namespace, name)
        if body is not None:
            cascade_usage.refresh(body, runtime.kube, source, time.time())
