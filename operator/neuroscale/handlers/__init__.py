"""Thin kopf handlers: read, call a controller, write. `build_registry` wires every kind."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any

import kopf

from neuroscale.handlers import autoscaling, cachetier, inferencecascade, modeldeployment
from neuroscale.runtime import OperatorConfig

PREFIX = "neuroscale.io"


class DigestDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's last-handled state as a digest instead of a copy of the whole spec and the user's metadata.

    kopf only needs it to tell a real change from a replayed event, and our handlers never read `old`, `new` or
    `diff`. A copy could push a schema-valid object past the API server's 256 KiB bound on annotations, and then kopf
    could never record that it handled it. After an upgrade each object gets one extra, idempotent reconcile.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        digest = hashlib.sha256(json.dumps(essence, sort_keys=True, default=str).encode()).hexdigest()
        return {"sha256": digest}  # type: ignore[typeddict-unknown-key]


def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """Operator settings that matter for correctness and for a quiet API server."""
    # Our own annotations and no status.kopf: the status belongs to users, not to the framework.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = DigestDiffBaseStorage(prefix=PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    # Only our explicit Events and real warnings become Kubernetes Events, never "handler succeeded" chatter:
    # a no-op resync must write nothing.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.execution.max_workers = 16
    # The chart installs the CRDs before the operator starts, and least-privilege RBAC grants no cluster-wide
    # list of namespaces or CRDs: discovery at start is all we need (scanning would retry 403s for a minute).
    settings.scanning.disabled = True
    # kopf ends the whole operator on an in-stream watch ERROR event (anything but 410 Gone), and its shutdown can
    # then wait forever for a re-login that no longer comes. Its own last resort, SIGKILL after this many seconds
    # (default ten minutes), turns that into a prompt exit that the Deployment restarts; a SIGTERM shutdown (in-flight
    # reconciles finishing) fits well within it and within the pod's 30 s grace period.
    settings.process.ultimate_exiting_timeout = 25


def build_registry(
    config: OperatorConfig, login: Callable[..., kopf.ConnectionInfo | None] = kopf.login_via_client
) -> kopf.OperatorRegistry:
    """Every handler of every kind, plus the login: the `kubernetes` client's in-cluster or kubeconfig credentials
    by default (a bare registry has no login handler, and kopf would find no credentials)."""
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry, id="login")(login)
    kopf.on.startup(registry=registry, id="configure")(configure)
    modeldeployment.register(registry, config)
    autoscaling.register(registry, config)
    inferencecascade.register(registry, config)
    cachetier.register(registry, config)
    return registry
