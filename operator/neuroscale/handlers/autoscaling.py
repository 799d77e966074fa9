"""kopf timer that runs the autoscaler for every ModelDeployment with autoscaling enabled."""

from __future__ import annotations

import threading
import time
from typing import Any

import kopf

from neuroscale.autoscale.metrics import MetricsSource, PrometheusSettings
from neuroscale.controllers import autoscaling as controller
from neuroscale.handlers.common import emitter
from neuroscale.handlers.modeldeployment import KIND, RESOURCE
from neuroscale.runtime import OperatorConfig, Runtime

_SOURCES_LOCK = threading.Lock()


def operator_prometheus(config: OperatorConfig) -> PrometheusSettings | None:
    if not config.prometheus_url:
        return None
    return PrometheusSettings(
        url=config.prometheus_url,
        bearer_token_file=config.prometheus_bearer_token_file,
        ca_file=config.prometheus_ca_file,
        sigv4_region=config.prometheus_sigv4_region,
        rate_window=config.prometheus_rate_window,
    )


def _source(runtime: Runtime, settings: PrometheusSettings | None) -> MetricsSource | None:
    """One MetricsSource (connection pools) per distinct settings, shared by every ModelDeployment."""
    if settings is None:
        return None
    with _SOURCES_LOCK:
        sources = runtime.extras.setdefault("metrics_sources", {})
        if settings not in sources:
            sources[settings] = MetricsSource(settings)
        return sources[settings]


def autoscale(namespace: str, name: str, uid: str, memo: kopf.Memo, **_: Any) -> None:
    runtime: Runtime = memo.runtime
    with runtime.lock((KIND, namespace, name)):
        body = runtime.kube.get("neuroscale.io/v1alpha1", KIND, namespace, name)
        if body is None:
            return
        scaling = controller.ModelDeploymentSpec.model_validate(body["spec"]).autoscaling
        if scaling is None:
            return
        memories = runtime.extras.setdefault("autoscale_memory", {})
        memory = memories.setdefault(uid, controller.Memory())
        settings = controller.prometheus_settings(scaling, operator_prometheus(runtime.config))
        controller.step(
            body, runtime.kube, _source(runtime, settings), memory, now=time.time(), clock=runtime.clock(),
            interval_s=runtime.config.autoscale_interval_seconds, emit=emitter(body),
        )


def _enabled(spec: kopf.Spec, **_: Any) -> bool:
    scaling = spec.get("autoscaling")
    return bool(scaling) and scaling.get("enabled", True)


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    kopf.timer(*RESOURCE, id="autoscale", registry=registry, interval=config.autoscale_interval_seconds,
               sharp=True, when=_enabled)(autoscale)
