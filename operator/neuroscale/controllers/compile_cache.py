"""What one ModelDeployment reconcile learns about its compiled artifacts and cold starts: the key's S3 marker
(through a narrow seam) and its pods."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from neuroscale.conditions import ConditionUpdate
from neuroscale.k8s.client import KubeClient, KubeError
from neuroscale.render.artifacts import marker_location
from neuroscale.render.modeldeployment import RenderedModel
from neuroscale.status.compile_cache import MarkerCheck, cold_start_status, compile_cache_status, pod_starts

log = logging.getLogger(__name__)


class ArtifactStore(Protocol):
    """Whether the completion marker `key` exists in `bucket` (aws/artifacts.py; never raises)."""

    def marker(self, bucket: str, key: str) -> MarkerCheck: ...


@dataclass(frozen=True)
class ArtifactView:
    compile_cache: dict[str, Any] | None
    condition: ConditionUpdate | None
    cold_start: dict[str, Any] | None


def observe(body: dict[str, Any], rendered: RenderedModel, live: dict[str, Any] | None, kube: KubeClient,
            store: ArtifactStore | None, *, now: datetime) -> ArtifactView:
    """status.compileCache (with its condition) and status.coldStart for the rendered key."""
    meta, status = body["metadata"], body.get("status") or {}
    pods: list[dict[str, Any]] = []
    if ((live or {}).get("status") or {}).get("replicas"):
        try:
            pods = kube.list("v1", "Pod", meta["namespace"], rendered.selector_string)
        except KubeError as exc:  # e.g. a chart from before pods could be listed: report what S3 says anyway
            log.warning("Listing the pods of %s/%s failed: %s", meta["namespace"], meta["name"], exc)
    starts = pod_starts(pods, rendered.artifact_key)
    cold_start = cold_start_status(status.get("coldStart"), rendered.artifact_key, starts)
    if rendered.artifact_prefix is None or store is None:
        return ArtifactView(None, None, cold_start)
    bucket, marker = marker_location(rendered.artifact_prefix)
    compile_cache, condition = compile_cache_status(
        status.get("compileCache"), key=rendered.artifact_key, uri=rendered.artifact_prefix,
        check=store.marker(bucket, marker), starts=starts, now=now)
    return ArtifactView(compile_cache, condition, cold_start)
