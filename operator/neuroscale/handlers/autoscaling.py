"""The autoscaler's control loop: one step per interval for every ModelDeployment with autoscaling enabled."""

from __future__ import annotations

import threading
import time

import kopf
from pydantic import ValidationError

from neuroscale.autoscale.metrics import MetricsSource, PrometheusSettings
from neuroscale.controllers import autoscaling as controller
from neuroscale.handlers.common import emitter
from neuroscale.handlers.modeldeployment import KIND, RESOURCE
from neuroscale.handlers.periodic import register_periodic
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


def shared_source(runtime: Runtime, settings: PrometheusSettings | None) -> MetricsSource | None:
    """One MetricsSource (connection pools) per distinct settings, shared by every ModelDeployment and cascade."""
    if settings is None:
        return None
    with _SOURCES_LOCK:
        sources = runtime.extras.setdefault("metrics_sources", {})
        if settings not in sources:
            sources[settings] = MetricsSource(settings)
        return sources[settings]


def autoscale(namespace: str, name: str, memo: kopf.Memo) -> None:
    runtime: Runtime = memo.runtime
    with runtime.lock((KIND, namespace, name)):
        body = runtime.kube.get("neuroscale.io/v1alpha1", KIND, namespace, name)
        if body is None:
            return
        uid = body["metadata"]["uid"]
        try:
            scaling = controller.ModelDeploymentSpec.model_validate(body.get("spec") or {}).autoscaling
        except ValidationError:
            return  # the reconcile reports an invalid spec in status and Events; nothing to scale
        if scaling is None:
            return
        memories = runtime.extras.setdefault("autoscale_memory", {})
        memory = memories.setdefault(uid, controller.Memory())
        settings = controller.prometheus_settings(scaling, operator_prometheus(runtime.config))
        controller.step(
            body, runtime.kube, shared_source(runtime, settings), memory, now=time.time(), clock=runtime.clock(),
            interval_s=runtime.config.autoscale_interval_seconds, emit=emitter(body),
        )


def _enabled(spec: kopf.Spec) -> bool:
    scaling = spec.get("autoscaling")
    return isinstance(scaling, dict) and scaling.get("enabled", True) is not False


def register(registry: kopf.OperatorRegistry, config: OperatorConfig) -> None:
    register_periodic(registry, RESOURCE, id="autoscale", interval=config.autoscale_interval_seconds,
                      initial_delay=0.0, run_one=autoscale, when=_enabled)
