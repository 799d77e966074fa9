"""Render a CacheTier: the Redis the operator runs (Deployment, Service), and what a gateway uses of it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from neuroscale.api.cachetier import CacheTierSpec, InClusterRedis
from neuroscale.api.common import SecretKeyRef
from neuroscale.render import labels
from neuroscale.render.modeldeployment import validate_names

CACHE_TIER_LABEL = "neuroscale.io/cache-tier"
CACHE_COMPONENT = "cache"
REDIS_PORT = 6379
PORT_NAME = "redis"
# The official image's `redis` user; the entrypoint drops to it only when started as root, so we start as it.
REDIS_UID = 999
SUFFIX = "-redis"
# Redis needs room beyond maxmemory (buffers, fragmentation); without it the kernel kills it before LRU evicts.
MEMORY_HEADROOM = 1.25
MEMORY_OVERHEAD_MIB = 64
# Env vars the gateway reads secrets from; the values are mounted from Secrets, never written into the config.
REDIS_PASSWORD_ENV = "NEUROSCALE_CACHE_REDIS_PASSWORD"
EMBEDDER_API_KEY_ENV = "NEUROSCALE_EMBEDDER_API_KEY"

__all__ = ["CacheBinding", "RenderedCache", "cache_binding", "redis_name", "render_cache_tier"]


@dataclass(frozen=True)
class RenderedCache:
    """The desired children of one CacheTier (none for an external backend) and the endpoint it reports."""

    objects: list[dict]
    endpoint: str
    backend: str


@dataclass(frozen=True)
class CacheBinding:
    """What one cascade's gateway needs to use a CacheTier: cache settings, secret env vars, pod labels."""

    settings: dict
    env: list[dict] = field(default_factory=list)
    # Names the cache on the gateway pods, so a NetworkPolicy can admit exactly the gateways that use it.
    pod_labels: dict[str, str] = field(default_factory=dict)


def redis_name(name: str) -> str:
    return f"{name}{SUFFIX}"


def cache_labels(name: str) -> dict[str, str]:
    return labels.component_labels(name, CACHE_COMPONENT, CACHE_TIER_LABEL)


def _selector(name: str) -> dict[str, str]:
    return labels.component_selector(name, CACHE_COMPONENT, CACHE_TIER_LABEL)


def endpoint(name: str, namespace: str, spec: CacheTierSpec) -> str:
    """The Redis URL gateways connect to, without credentials."""
    if spec.backend.external is not None:
        return spec.backend.external.url
    return f"redis://{redis_name(name)}.{namespace}.svc.cluster.local:{REDIS_PORT}/0"


def _container_memory_mib(spec: CacheTierSpec) -> int:
    return math.ceil(spec.max_memory_mb * MEMORY_HEADROOM) + MEMORY_OVERHEAD_MIB


def _redis_deployment(name: str, namespace: str, spec: CacheTierSpec, backend: InClusterRedis) -> dict:
    memory = f"{_container_memory_mib(spec)}Mi"
    container = {
        "name": "redis",
        "image": backend.image,
        # A cache: no RDB snapshots, no AOF; evict least recently used keys at the size bound instead of failing writes.
        "args": [
            "redis-server", "--port", str(REDIS_PORT), "--save", "", "--appendonly", "no",
            "--maxmemory", f"{spec.max_memory_mb}mb", "--maxmemory-policy", "allkeys-lru",
            "--protected-mode", "no",
        ],
        "ports": [{"name": PORT_NAME, "containerPort": REDIS_PORT, "protocol": "TCP"}],
        "readinessProbe": {"exec": {"command": ["redis-cli", "ping"]}, "periodSeconds": 5, "timeoutSeconds": 2},
        "livenessProbe": {"tcpSocket": {"port": PORT_NAME}, "periodSeconds": 10, "failureThreshold": 3},
        "resources": {"requests": {"cpu": backend.cpu, "memory": memory}, "limits": {"memory": memory}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "privileged": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "runAsUser": REDIS_UID,
            "runAsGroup": REDIS_UID,
        },
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": redis_name(name), "namespace": namespace, "labels": cache_labels(name)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": _selector(name)},
            # Never two caches at once: the old one holds its memory until it is gone.
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": cache_labels(name)},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"fsGroup": REDIS_UID, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [container],
                    "volumes": [{"name": "data", "emptyDir": {"sizeLimit": "64Mi"}}],
                },
            },
        },
    }


def _redis_service(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": redis_name(name), "namespace": namespace, "labels": cache_labels(name)},
        "spec": {
            "type": "ClusterIP",
            "selector": _selector(name),
            "ports": [{"name": PORT_NAME, "port": REDIS_PORT, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }


def _redis_network_policy(name: str, namespace: str) -> dict:
    """Only the gateways bound to this CacheTier (and nothing else in the namespace) may reach its Redis.

    The operator-run Redis has no password, and it holds every tenant's cached answers: without this policy any
    pod in the namespace could read them. Enforced where the cluster's CNI enforces NetworkPolicy (on EKS: the VPC
    CNI with network policy enabled, Calico or Cilium).
    """
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": redis_name(name), "namespace": namespace, "labels": cache_labels(name)},
        "spec": {
            "podSelector": {"matchLabels": _selector(name)},
            "policyTypes": ["Ingress"],
            "ingress": [{
                "from": [{"podSelector": {"matchLabels": {CACHE_TIER_LABEL: name}}}],
                "ports": [{"protocol": "TCP", "port": REDIS_PORT}],
            }],
        },
    }


def render_cache_tier(name: str, namespace: str, spec: CacheTierSpec) -> RenderedCache:
    """The children of CacheTier `namespace/name`: a Redis for an inCluster backend, nothing for an external one.

    Raises ValueError for names that cannot name the children. Objects carry no ownerReferences (the caller adopts).
    """
    validate_names(name, namespace, kind="CacheTier", suffix=SUFFIX, child="Redis Service")
    url = endpoint(name, namespace, spec)
    backend = spec.backend.in_cluster
    if backend is None:
        return RenderedCache(objects=[], endpoint=url, backend="external")
    objects = [_redis_deployment(name, namespace, spec, backend), _redis_service(name, namespace),
               _redis_network_policy(name, namespace)]
    return RenderedCache(objects=objects, endpoint=url, backend="inCluster")


def _secret_env(env_name: str, ref: SecretKeyRef) -> dict:
    return {"name": env_name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def cache_binding(name: str, namespace: str, spec: CacheTierSpec, key_prefix: str) -> CacheBinding:
    """The gateway's cache settings for CacheTier `name` (a `neuroscale.cache.CacheSettings` mapping).

    `key_prefix` separates cascades sharing one CacheTier: their tiers differ, so their answers must not mix.
    """
    settings: dict = {
        "mode": spec.mode,
        "backend": "redis",
        "redis_url": endpoint(name, namespace, spec),
        "key_prefix": key_prefix,
        "ttl_seconds": spec.ttl_seconds,
        "max_entries": spec.max_entries,
        "max_memory_mb": spec.max_memory_mb,
        "cacheable_temperature_max": spec.cacheable.max_temperature,
    }
    env: list[dict] = []
    external = spec.backend.external
    if external is not None and external.password_secret_ref is not None:
        env.append(_secret_env(REDIS_PASSWORD_ENV, external.password_secret_ref))
        settings["password_env"] = REDIS_PASSWORD_ENV
    if external is not None and external.cluster_mode:
        settings["redis_cluster"] = True
    if spec.mode == "semantic":
        semantic = spec.semantic
        threshold = semantic.similarity_threshold if semantic else None
        embedding = semantic.embedding if semantic else None
        if threshold is not None:
            settings["similarity_threshold"] = threshold
        if semantic is not None and semantic.index != "auto":
            settings["semantic_index"] = semantic.index
        if embedding is not None:
            embedder: dict = {"kind": embedding.kind}
            for key, value in (("model", embedding.model), ("url", embedding.url), ("region", embedding.region)):
                if value is not None:
                    embedder[key] = value
            if embedding.api_key_secret_ref is not None:
                embedder["api_key_env"] = EMBEDDER_API_KEY_ENV
                env.append(_secret_env(EMBEDDER_API_KEY_ENV, embedding.api_key_secret_ref))
            settings["embedder"] = embedder
    return CacheBinding(
        settings=settings,
        env=env,
        pod_labels={CACHE_TIER_LABEL: name} if external is None else {},
    )


def render_cache_tier_doc(doc: dict, name: str, namespace: str, _documents: Sequence[Any] = ()) -> tuple[list[dict], str]:
    """`neuroscale plan` for a CacheTier manifest: its Redis objects and a one-line summary."""
    spec = CacheTierSpec.model_validate(doc.get("spec") or {})
    rendered = render_cache_tier(name, namespace, spec)
    return rendered.objects, f"{spec.mode} cache, {rendered.backend} Redis at {rendered.endpoint}"
