"""Render an InferenceCascade: resolve its tiers, build the gateway config, and the gateway's Kubernetes objects."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from neuroscale.api.cachetier import CacheTierSpec
from neuroscale.api.inferencecascade import CascadeTier, InferenceCascadeSpec
from neuroscale.api.modeldeployment import DEFAULT_COLD_START_SECONDS, ModelDeploymentSpec
from neuroscale.gateway.config import GatewayConfig
from neuroscale.render import labels
from neuroscale.render.cachetier import CacheBinding, cache_binding
from neuroscale.render.modeldeployment import served_model_name, validate_names
from neuroscale import __version__
from neuroscale.render.pod import PORT_NAME as ENGINE_PORT_NAME, container_security

CASCADE_LABEL = "neuroscale.io/inference-cascade"
GATEWAY_COMPONENT = "gateway"
SUFFIX = "-gateway"
CONFIG_DIR = "/etc/neuroscale"
CONFIG_FILE = "gateway.json"
CONFIG_HASH = "neuroscale.io/config-hash"
# The tenants file of spec.auth.apiKeys: its own directory, because the kubelet updates a Secret volume in place
# (keys rotate without a restart) only when it is mounted whole, never through subPath.
TENANTS_DIR = "/var/run/neuroscale/tenants"
TENANTS_FILE = "tenants.yaml"
PROXY_SECRET_ENV = "NEUROSCALE_PROXY_SHARED_SECRET"
# A terminating pod keeps serving this long before it gets SIGTERM: the time Services and load balancers take to stop
# sending it new connections once it is marked for deletion.
PRE_STOP_SECONDS = 5
CONTAINER_PORT = 8080
PORT_NAME = "http"
MODEL_DEPLOYMENT_PORT = 8000  # ModelDeployment's default service.port, for a tier whose spec is unknown
DEFAULT_CPU = "500m"
DEFAULT_MEMORY = "512Mi"
# The local MiniLM embedder and torch live in the gateway process in semantic mode.
SEMANTIC_LOCAL_MEMORY = "1536Mi"
# What `plan` shows when no operator says otherwise: the release image (the operator's --gateway-image default).
# The chart's default repository; the operator is told its real image with --gateway-image.
RELEASE_IMAGE = f"neuroscale/neuroscale:{__version__}"

__all__ = ["RenderedCascade", "ResolvedTier", "gateway_name", "render_inference_cascade", "resolve_tiers"]


@dataclass(frozen=True)
class ResolvedTier:
    """A tier as the operator resolved it: where it points, whether it is ready, and its gateway config entry."""

    name: str
    kind: str
    endpoint: str
    ready: str  # "True", "False" or "Unknown"
    message: str
    config: dict[str, Any]

    def to_status(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "endpoint": self.endpoint, "ready": self.ready,
                "message": self.message}


@dataclass(frozen=True)
class RenderedCascade:
    """The desired children of one InferenceCascade and what its status reports about them."""

    objects: list[dict]
    config: GatewayConfig
    config_json: str
    config_hash: str
    endpoint: str
    model_name: str


def gateway_name(name: str) -> str:
    return f"{name}{SUFFIX}"


def api_key_env(tier_name: str) -> str:
    """The env var holding an external tier's API key (tier names are DNS labels, so this is unique)."""
    return "NEUROSCALE_TIER_" + re.sub(r"[^A-Za-z0-9]", "_", tier_name).upper() + "_API_KEY"


def api_keys_secret(name: str, spec: InferenceCascadeSpec) -> str:
    return spec.auth.api_keys.secret_name or f"{name}-api-keys"


def _price(tier: CascadeTier, body: dict[str, Any] | None) -> dict[str, float]:
    """A tier's chargeback price: the spec's table, else a ModelDeployment's own cost per million generated tokens."""
    if tier.pricing is not None:
        return {"prompt_per_million": tier.pricing.prompt_per_million_tokens,
                "completion_per_million": tier.pricing.completion_per_million_tokens}
    cost = ((body or {}).get("status") or {}).get("costPerMillionTokens")
    if tier.model_deployment is not None and isinstance(cost, (int, float)) and cost >= 0:
        return {"prompt_per_million": 0.0, "completion_per_million": float(cost)}
    return {"prompt_per_million": 0.0, "completion_per_million": 0.0}


def _served_adapters(body: dict[str, Any] | None) -> tuple[str, ...]:
    """The LoRA adapter names a ModelDeployment serves (its spec.adapters), for the gateway to offer as models."""
    adapters = ((body or {}).get("spec") or {}).get("adapters") or ()
    return tuple(a["name"] for a in adapters if isinstance(a, dict) and isinstance(a.get("name"), str))


def _model_deployment_target(ref: str, namespace: str, body: dict[str, Any] | None) -> tuple[str, str, str, str]:
    """(endpoint, model name, ready, message) of a ModelDeployment tier from the ModelDeployment (None: not found)."""
    conventional = f"http://{ref}.{namespace}.svc.cluster.local:{MODEL_DEPLOYMENT_PORT}/v1"
    if body is None:
        return conventional, ref, "False", f"ModelDeployment {ref} not found"
    status = body.get("status") or {}
    try:
        spec = ModelDeploymentSpec.model_validate(body.get("spec") or {})
        endpoint = f"http://{ref}.{namespace}.svc.cluster.local:{spec.service.port}/v1"
        model = served_model_name(spec)
    except ValidationError:
        endpoint, model = conventional, ref
    endpoint = status.get("endpoint") or endpoint
    model = status.get("servedModelName") or model
    ready = next((c for c in status.get("conditions") or () if c.get("type") == "Ready"), None)
    if ready is None:
        return endpoint, model, "False", f"ModelDeployment {ref} has not reported readiness yet"
    state = ready.get("status") if ready.get("status") in ("True", "False") else "False"
    detail = ready.get("message") or ready.get("reason") or ""
    return endpoint, model, state, "" if state == "True" else f"ModelDeployment {ref}: {detail}".rstrip(": ")


def _wake(ref: str, body: dict[str, Any] | None, hold_seconds: float) -> dict[str, Any] | None:
    """The gateway's wake settings for a ModelDeployment that may scale to zero (autoscaling with minReplicas 0)."""
    try:
        scaling = ModelDeploymentSpec.model_validate((body or {}).get("spec") or {}).autoscaling
    except ValidationError:
        return None
    if scaling is None or not scaling.enabled or scaling.min_replicas > 0:
        return None
    # The declared cold start, not the measured one: the gateway measures its own wakes, and a config that followed
    # every new sample would roll the gateways.
    declared = scaling.cold_start_seconds
    return {"model_deployment": ref,
            "cold_start_seconds": float(declared) if declared is not None else DEFAULT_COLD_START_SECONDS,
            "hold_seconds": hold_seconds}


def _tier_common(tier: CascadeTier) -> dict[str, Any]:
    common: dict[str, Any] = {
        "name": tier.name,
        "timeouts": {
            "connect_seconds": tier.timeouts.connect_seconds,
            "first_token_seconds": tier.timeouts.first_token_seconds,
            "total_seconds": tier.timeouts.total_seconds,
        },
    }
    if tier.max_prompt_tokens is not None:
        common["max_prompt_tokens"] = tier.max_prompt_tokens
    return common


def _routing(spec: InferenceCascadeSpec, service: str, namespace: str) -> dict[str, Any]:
    """A ModelDeployment tier's replica routing in the gateway config (its Service is named after it)."""
    routing = spec.routing
    return {"policy": routing.policy, "service": service, "namespace": namespace, "port_name": ENGINE_PORT_NAME,
            "load_factor": routing.load_factor, "session_header": routing.session_header}


def routes_replicas(spec: InferenceCascadeSpec) -> bool:
    """Whether the gateway picks ModelDeployment replicas itself (and so watches EndpointSlices)."""
    return spec.routing.policy != "service" and any(t.model_deployment is not None for t in spec.tiers)


def _resolve(tier: CascadeTier, spec: InferenceCascadeSpec, namespace: str,
             model_deployments: Mapping[str, dict[str, Any] | None]) -> ResolvedTier:
    common = _tier_common(tier)
    ref_body = model_deployments.get(tier.model_deployment.name) if tier.model_deployment is not None else None
    common["price"] = _price(tier, ref_body)
    unprobed = "external tier: not probed by the operator"
    if tier.model_deployment is not None:
        ref = tier.model_deployment.name
        body = model_deployments.get(ref)
        url, model, ready, message = _model_deployment_target(ref, namespace, body)
        config = {**common, "kind": "openai", "url": url, "model": model}
        adapters = _served_adapters(body)
        if adapters:
            config["adapters"] = list(adapters)
        adapter = tier.model_deployment.adapter
        if adapter is not None:
            config["model"] = adapter
            if body is not None and adapter not in adapters:
                ready, message = "False", f"ModelDeployment {ref} serves no adapter {adapter}"
        wake = _wake(ref, body, tier.model_deployment.wake_hold_seconds)
        if wake is not None:
            config["wake"] = wake
        if routes_replicas(spec):
            config["routing"] = _routing(spec, ref, namespace)
        return ResolvedTier(tier.name, tier.kind, url, ready, message, config)
    if tier.openai is not None:
        config = {**common, "kind": "openai", "url": tier.openai.url, "model": tier.openai.model}
        if tier.openai.api_key_secret_ref is not None:
            config["api_key_env"] = api_key_env(tier.name)
        return ResolvedTier(tier.name, tier.kind, tier.openai.url, "Unknown", unprobed, config)
    if tier.bedrock is not None:
        bedrock = tier.bedrock
        config = {**common, "kind": "bedrock", "model_id": bedrock.model_id, "region": bedrock.region}
        if bedrock.endpoint_url:
            config["endpoint_url"] = bedrock.endpoint_url
        return ResolvedTier(tier.name, tier.kind, f"bedrock://{bedrock.region}/{bedrock.model_id}", "Unknown",
                            unprobed, config)
    sagemaker = tier.sagemaker
    if sagemaker is None:
        raise ValueError(f"tier {tier.name}: set exactly one of modelDeployment, openai, bedrock or sagemaker")
    config = {**common, "kind": "sagemaker", "endpoint_name": sagemaker.endpoint_name, "region": sagemaker.region,
              "payload": sagemaker.payload}
    for key, value in (("inference_component", sagemaker.inference_component), ("endpoint_url", sagemaker.endpoint_url)):
        if value:
            config[key] = value
    return ResolvedTier(tier.name, tier.kind, f"sagemaker://{sagemaker.region}/{sagemaker.endpoint_name}", "Unknown",
                        unprobed, config)


def resolve_tiers(
    spec: InferenceCascadeSpec, namespace: str, model_deployments: Mapping[str, dict[str, Any] | None]
) -> list[ResolvedTier]:
    """Every tier, in order. `model_deployments` maps a referenced ModelDeployment's name to its body (None: absent).

    A ModelDeployment tier that is missing or not ready still gets its conventional Service URL, so the gateway
    works as soon as it comes up; its readiness is reported, never silently skipped.
    """
    return [_resolve(tier, spec, namespace, model_deployments) for tier in spec.tiers]


def _escalation(spec: InferenceCascadeSpec) -> dict[str, Any]:
    escalation = spec.escalation
    out: dict[str, Any] = {
        "on_upstream_error": escalation.on_upstream_error,
        "on_empty_answer": escalation.on_empty_answer,
        "on_refusal": escalation.on_refusal,
        "stream_inspect_tokens": escalation.stream_inspect_tokens,
        "allow_client_hint": escalation.allow_client_hint,
    }
    for key, value in (("refusal_patterns", escalation.refusal_patterns),
                       ("min_mean_logprob", escalation.min_mean_logprob),
                       ("default_max_tier", escalation.default_max_tier)):
        if value is not None:
            out[key] = value
    return out


def gateway_config(name: str, spec: InferenceCascadeSpec, tiers: list[ResolvedTier],
                   cache: CacheBinding | None) -> GatewayConfig:
    """The validated gateway config; a ValueError names what is wrong when the combination cannot work."""
    data: dict[str, Any] = {
        "model_name": spec.model_name or name,
        "tiers": [tier.config for tier in tiers],
        "escalation": _escalation(spec),
        "port": CONTAINER_PORT,
        "max_body_bytes": spec.gateway.max_body_bytes,
        "drain_seconds": spec.gateway.drain_seconds,
    }
    if cache is not None:
        data["cache"] = cache.settings
    data["auth"] = _auth(name, spec)
    if spec.auth.mode != "none" or spec.quotas.requests_per_minute or spec.quotas.tokens_per_minute:
        data["quotas"] = _quotas(name, spec, cache)
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in err.errors())
        raise ValueError(f"the gateway config cannot work: {problems}") from None


def _auth(name: str, spec: InferenceCascadeSpec) -> dict[str, Any]:
    auth = spec.auth
    if auth.mode == "apiKeys":
        return {"mode": "api_keys", "keys_file": f"{TENANTS_DIR}/{TENANTS_FILE}"}
    if auth.mode == "trustedHeader" and auth.trusted_header is not None:
        trusted = auth.trusted_header
        out: dict[str, Any] = {"mode": "trusted_header", "tenant_header": trusted.header,
                               "proxy_cidrs": list(trusted.proxy_cidrs or ())}
        if trusted.shared_secret_header and trusted.shared_secret_ref is not None:
            out |= {"shared_secret_header": trusted.shared_secret_header, "shared_secret_env": PROXY_SECRET_ENV}
        return out
    return {"mode": "none"}


def _quotas(name: str, spec: InferenceCascadeSpec, cache: CacheBinding | None) -> dict[str, Any]:
    """Quotas count in the cache's Redis, shared by every replica; without a cache each replica counts alone."""
    out: dict[str, Any] = {"key_prefix": name}
    if cache is not None and cache.settings.get("redis_url"):
        out["redis_url"] = cache.settings["redis_url"]
        if cache.settings.get("password_env"):
            out["password_env"] = cache.settings["password_env"]
        if cache.settings.get("key_prefix"):
            out["key_prefix"] = cache.settings["key_prefix"]
    for key, value in (("requests_per_minute", spec.quotas.requests_per_minute),
                       ("tokens_per_minute", spec.quotas.tokens_per_minute)):
        if value is not None:
            out[key] = value
    return out


def gateway_labels(name: str) -> dict[str, str]:
    return labels.component_labels(name, GATEWAY_COMPONENT, CASCADE_LABEL)


def _selector(name: str) -> dict[str, str]:
    return labels.component_selector(name, GATEWAY_COMPONENT, CASCADE_LABEL)


def _meta(name: str, namespace: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": gateway_name(name), "namespace": namespace, "labels": gateway_labels(name)}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _secret_env(spec: InferenceCascadeSpec) -> list[dict[str, Any]]:
    env = []
    trusted = spec.auth.trusted_header
    if spec.auth.mode == "trustedHeader" and trusted is not None and trusted.shared_secret_ref is not None:
        ref = trusted.shared_secret_ref
        env.append({"name": PROXY_SECRET_ENV, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    for tier in spec.tiers:
        if tier.openai is not None and tier.openai.api_key_secret_ref is not None:
            ref = tier.openai.api_key_secret_ref
            env.append({"name": api_key_env(tier.name),
                        "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}})
    return env


def _memory(spec: InferenceCascadeSpec, config: GatewayConfig) -> str:
    if spec.gateway.resources.memory:
        return spec.gateway.resources.memory
    cache = config.cache or {}
    local = (cache.get("embedder") or {}).get("kind", "local") == "local"
    return SEMANTIC_LOCAL_MEMORY if cache.get("mode") == "semantic" and local else DEFAULT_MEMORY


def _endpoint_reader(name: str, namespace: str, account: str) -> list[dict[str, Any]]:
    """A Role that reads EndpointSlices in the cascade's namespace, bound to the gateway's account: all the gateway
    needs to find its tiers' replicas. The operator holds these verbs itself, so it may grant them (RBAC refuses a
    Role that grants more than its creator has) and needs neither `escalate` nor `bind`."""
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": _meta(name, namespace),
            "rules": [{"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                       "verbs": ["get", "list", "watch"]}]}
    binding = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": _meta(name, namespace),
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": gateway_name(name)},
               "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": namespace}]}
    return [role, binding]


def _deployment(name: str, namespace: str, spec: InferenceCascadeSpec, config: GatewayConfig, config_hash: str,
                cache: CacheBinding | None, image: str, account: str | None, routed: bool) -> dict[str, Any]:
    memory = _memory(spec, config)
    container = {
        "name": "gateway",
        "image": spec.gateway.image or image,
        "args": ["gateway", "--config", f"{CONFIG_DIR}/{CONFIG_FILE}"],
        "ports": [{"name": PORT_NAME, "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
        # Python and the embedding model want a writable home for caches; the root filesystem is read-only.
        "env": [{"name": "HOME", "value": "/tmp"}, *_secret_env(spec), *(cache.env if cache else [])],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": PORT_NAME}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": PORT_NAME}, "periodSeconds": 10,
                          "failureThreshold": 3},
        # A semantic gateway loads its embedding model before it answers.
        "startupProbe": {"httpGet": {"path": "/healthz", "port": PORT_NAME}, "periodSeconds": 2,
                         "failureThreshold": 60},
        "resources": {"requests": {"cpu": spec.gateway.resources.cpu or DEFAULT_CPU, "memory": memory},
                      "limits": {"memory": memory}},
        "securityContext": {**container_security(), "readOnlyRootFilesystem": True},
        "lifecycle": {"preStop": {"sleep": {"seconds": PRE_STOP_SECONDS}}},
        "volumeMounts": [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": gateway_name(name)}},
                                     {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    if spec.auth.mode == "apiKeys":
        container["volumeMounts"].append({"name": "tenants", "mountPath": TENANTS_DIR, "readOnly": True})
        # Optional: the gateway starts without the Secret and answers 401 until it exists, then picks it up.
        volumes.append({"name": "tenants", "secret": {
            "secretName": api_keys_secret(name, spec), "optional": True,
            "items": [{"key": spec.auth.api_keys.secret_key, "path": TENANTS_FILE}]}})
    pod_spec: dict[str, Any] = {
        # Only a gateway that watches EndpointSlices talks to the API server, and only it gets a token.
        "automountServiceAccountToken": routed,
        "enableServiceLinks": False,
        # preStop, then the drain (cli.py), then a margin before the kubelet kills what is left.
        "terminationGracePeriodSeconds": PRE_STOP_SECONDS + spec.gateway.drain_seconds + 5,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [container],
        "volumes": volumes,
        "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": _selector(name)},
        }],
    }
    if account:
        pod_spec["serviceAccountName"] = account
    pod_labels = {**gateway_labels(name), **(cache.pod_labels if cache else {})}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(name, namespace),
        "spec": {
            "replicas": spec.gateway.replicas,
            "selector": {"matchLabels": _selector(name)},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": pod_labels,
                    # The hash rolls the pods when the config changes: a mounted file would change under a running
                    # gateway, which reads it once at start.
                    "annotations": {CONFIG_HASH: config_hash, labels.SCRAPE: "true",
                                    labels.SCRAPE_PORT: str(CONTAINER_PORT), labels.SCRAPE_PATH: "/metrics"},
                },
                "spec": pod_spec,
            },
        },
    }


def render_inference_cascade(
    name: str, namespace: str, spec: InferenceCascadeSpec, tiers: list[ResolvedTier], cache: CacheBinding | None,
    *, image: str,
) -> RenderedCascade:
    """The gateway ConfigMap, Deployment, Service (a ServiceAccount for an IAM role or for routing, and the Role and
    RoleBinding that let a routing gateway read EndpointSlices) of `namespace/name`.

    Raises ValueError for names or settings that cannot work. Objects carry no ownerReferences (the caller adopts).
    """
    validate_names(name, namespace, kind="InferenceCascade", suffix=SUFFIX, child="gateway Service")
    config = gateway_config(name, spec, tiers, cache)
    config_json = json.dumps(config.model_dump(mode="json"), indent=2, sort_keys=True) + "\n"
    config_hash = hashlib.sha256(config_json.encode()).hexdigest()[:16]
    account_spec = spec.gateway.service_account
    account_name, objects = account_spec.name, []
    routed = routes_replicas(spec)
    if not account_name and (account_spec.role_arn or routed):
        account_name = gateway_name(name)
        annotations = {labels.ROLE_ARN: account_spec.role_arn} if account_spec.role_arn else None
        objects.append({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": _meta(name, namespace, annotations),
                        "automountServiceAccountToken": False})
    if routed:
        assert account_name is not None
        objects.extend(_endpoint_reader(name, namespace, account_name))
    objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, namespace),
                    "data": {CONFIG_FILE: config_json}})
    objects.append(_deployment(name, namespace, spec, config, config_hash, cache, image, account_name, routed))
    if spec.gateway.replicas >= 2:
        # Voluntary disruptions (node drains, Karpenter consolidation) take one gateway at a time; a single replica
        # gets no budget, so it never blocks a drain.
        objects.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": _meta(name, namespace),
                        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": _selector(name)},
                                 "unhealthyPodEvictionPolicy": "AlwaysAllow"}})
    objects.append({
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace),
        "spec": {"type": spec.gateway.service_type, "selector": _selector(name),
                 "ports": [{"name": PORT_NAME, "port": spec.gateway.port, "targetPort": PORT_NAME, "protocol": "TCP"}]},
    })
    return RenderedCascade(
        objects=objects, config=config, config_json=config_json, config_hash=config_hash,
        endpoint=f"http://{gateway_name(name)}.{namespace}.svc.cluster.local:{spec.gateway.port}/v1",
        model_name=config.model_name,
    )


def _documents_named(documents: Sequence[Any], kind: str, namespace: str) -> dict[str, dict[str, Any]]:
    found = {}
    for doc in documents:
        if not isinstance(doc, dict) or doc.get("kind") != kind or not isinstance(doc.get("metadata"), dict):
            continue
        meta = doc["metadata"]
        if (meta.get("namespace") or namespace) == namespace and isinstance(meta.get("name"), str):
            found[meta["name"]] = doc
    return found


def render_inference_cascade_doc(doc: dict[str, Any], name: str, namespace: str, documents: Sequence[Any] = (),
                                 *, image: str | None = None) -> tuple[list[dict], str]:
    """`neuroscale plan` for an InferenceCascade: ModelDeployments and the CacheTier come from the same input;
    a ModelDeployment not in it resolves to its conventional Service URL, a CacheTier not in it means no cache."""
    spec = InferenceCascadeSpec.model_validate(doc.get("spec") or {})
    models = _documents_named(documents, "ModelDeployment", namespace)
    tiers = resolve_tiers(spec, namespace, {t.model_deployment.name: models.get(t.model_deployment.name)
                                            for t in spec.tiers if t.model_deployment is not None})
    binding = None
    if spec.cache_tier_ref is not None:
        cache_doc = _documents_named(documents, "CacheTier", namespace).get(spec.cache_tier_ref.name)
        if cache_doc is not None:
            binding = cache_binding(spec.cache_tier_ref.name, namespace,
                                    CacheTierSpec.model_validate(cache_doc.get("spec") or {}), key_prefix=name)
    rendered = render_inference_cascade(name, namespace, spec, tiers, binding,
                                        image=image or RELEASE_IMAGE)
    cache = f"{binding.settings['mode']} cache" if binding else "no cache"
    return rendered.objects, (f"gateway for {rendered.model_name!r} at {rendered.endpoint}, tiers "
                              f"{' → '.join(t.name for t in tiers)}, {cache}")
