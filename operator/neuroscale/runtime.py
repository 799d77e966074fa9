"""What every handler shares in one operator process: the API client, settings, metrics source, locks."""

from __future__ import annotations

import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable

from neuroscale.k8s.client import KubeClient
from neuroscale.render.inferencecascade import RELEASE_IMAGE


@dataclass(frozen=True)
class OperatorConfig:
    """Operator-wide settings from the command line (and so from Helm values)."""

    resync_seconds: float = 300.0
    autoscale_interval_seconds: float = 15.0
    prometheus_url: str | None = None
    prometheus_bearer_token_file: str | None = None
    prometheus_ca_file: str | None = None
    prometheus_sigv4_region: str | None = None
    prometheus_rate_window: str = "2m"
    gateway_image: str = RELEASE_IMAGE  # the chart passes the operator's own image
    compile_cache_check_seconds: float = 60.0  # how long an S3 answer about an artifact key is reused


@dataclass
class Runtime:
    """Shared by the handlers through kopf's `memo`; built once at startup (or by a test)."""

    kube: KubeClient
    config: OperatorConfig = field(default_factory=OperatorConfig)
    clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
    _locks: dict[Any, threading.Lock] = field(default_factory=lambda: defaultdict(threading.Lock))
    _guard: threading.Lock = field(default_factory=threading.Lock)
    extras: dict[str, Any] = field(default_factory=dict)

    def lock(self, key: Any) -> threading.Lock:
        """One lock per object: a child's event and the parent's timer must not reconcile it at the same time."""
        with self._guard:
            return self._locks[key]
