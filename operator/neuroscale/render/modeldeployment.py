"""Render a ModelDeployment into the Kubernetes objects that serve it: ServiceAccount, Deployment, Service, PDB."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.api.schema import ObjectProblem
from neuroscale.api.adapters import lora_rank_slot
from neuroscale.api.speculative_decoding import NXDI_FAMILIES
from neuroscale.render import labels
from neuroscale.render.adapters import lora_args
from neuroscale.render.artifacts import ArtifactInputs, artifact_key, graph_args, graph_env, keyed_prefix
from neuroscale.render.engines import EngineImages, EngineInputs, get_engine
from neuroscale.render.pod import (
    PORT_NAME, PodInputs, engine_args, engine_env, engine_image, engine_model, pod_template,
)
from neuroscale.render.resources import compile_seconds, replica_resources
from neuroscale.render.speculative_decoding import speculative_args, speculator_download
from neuroscale.sizing.memory import CoResident
from neuroscale.sizing.sizer import SizingRequest, SizingResult, size
from neuroscale.sizing.speculation import ASSUMED_ACCEPTANCE_RATE

# Child objects take the CR's name; a Service name must be an RFC 1035 label.
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS_1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# TGI's and DJL-LMI's Neuron backends run on Inferentia2 and Trainium1 only (NEURON.md "Serving engines").
LEGACY_ENGINE_FAMILIES = ("inf2", "trn1", "trn1n")

# Past the startup budget, the Deployment may report a stalled rollout only after this much more time.
PROGRESS_MARGIN_SECONDS = 600

__all__ = ["RenderedModel", "render_model_deployment", "served_model_name", "sizing_request"]


@dataclass(frozen=True)
class RenderedModel:
    """The desired children of one ModelDeployment and what its status reports about them."""

    sizing: SizingResult
    objects: list[dict]
    selector: dict[str, str]
    endpoint: str
    served_model_name: str
    artifact_key: str = ""
    # `<compileCache.uri>/<key>/` when the spec has a compile cache.
    artifact_prefix: str | None = None

    @property
    def selector_string(self) -> str:
        return labels.selector_string(self.selector)


def sizing_request(spec: ModelDeploymentSpec) -> SizingRequest:
    """The sizing question a spec asks: its model and shapes, with the user's pinned instance and degree."""
    model = spec.model
    return SizingRequest(
        source=model.source,
        params_billions=model.parameters_billions,
        architecture=model.architecture,
        dtype=model.dtype,
        kv_cache_dtype=model.kv_cache_dtype,
        max_model_len=model.max_model_len,
        max_num_seqs=spec.batching.max_num_seqs,
        instance_type=spec.accelerator.instance_type,
        tensor_parallel=spec.accelerator.tensor_parallel_degree,
        families=_families(spec),
        co_resident=co_resident(spec),
        acceptance_rate=_acceptance_rate(spec),
        prompt_tokens=spec.batching.mean_prompt_tokens,
        output_tokens=spec.batching.mean_output_tokens,
        max_time_per_output_token_ms=spec.batching.max_time_per_output_token_ms,
        replicas=_replica_range(spec),
    )


def co_resident(spec: ModelDeploymentSpec) -> CoResident | None:
    """What shares the replica's Neuron memory with the model: the speculative head, the LoRA adapter slots."""
    speculation, adapters = spec.speculative_decoding, spec.adapters
    if speculation is None and not adapters:
        return None
    return CoResident(
        num_speculative_tokens=speculation.num_speculative_tokens if speculation else 0,
        speculator_params_billions=speculation.draft_model.parameters_billions if speculation else None,
        lora_slots=len(adapters),
        lora_rank=lora_rank_slot(adapters) if adapters else 0,
    )


def _acceptance_rate(spec: ModelDeploymentSpec) -> float:
    speculation = spec.speculative_decoding
    return (speculation.expected_acceptance_rate if speculation else None) or ASSUMED_ACCEPTANCE_RATE


def _nxdi_features(spec: ModelDeploymentSpec) -> list[str]:
    """What only vLLM's NxD Inference image serves (inf2/trn1): LoRA adapters and EAGLE v1 heads."""
    features = ["LoRA adapters"] if spec.adapters else []
    if spec.speculative_decoding is not None and spec.speculative_decoding.method == "eagle":
        features.append("EAGLE (v1) speculative decoding")
    return features


def _replica_range(spec: ModelDeploymentSpec) -> tuple[int, int]:
    """The replica counts sizing prices packing over: the autoscaler's range. Without autoscaling, one: a manual
    `kubectl scale` must never move every replica to another instance type."""
    scaling = spec.autoscaling
    if scaling is None or not scaling.enabled:
        return (1, 1)
    return (max(1, scaling.min_replicas), max(1, scaling.min_replicas, scaling.max_replicas))


def _narrowed(chosen: tuple[str, ...], allowed: tuple[str, ...], runs_on: str, fix: str) -> tuple[str, ...]:
    """`chosen` (all of `allowed` when empty) kept to `allowed`; an error saying what `runs_on` when none is left."""
    narrowed = tuple(f for f in chosen if f in allowed) if chosen else allowed
    if not narrowed:
        raise ValueError(f"{runs_on} only, but accelerator.families allows {', '.join(chosen)}; {fix}")
    return narrowed


def _families(spec: ModelDeploymentSpec) -> tuple[str, ...]:
    """The instance families sizing may pick: the spec's choice, narrowed to what the engine runs on."""
    chosen = tuple(spec.accelerator.families)
    features = _nxdi_features(spec)
    if spec.engine.name == "vllm" and features:
        return _narrowed(chosen, NXDI_FAMILIES, f"{' and '.join(features)} run on vLLM's NxD Inference image "
                         f"({', '.join(NXDI_FAMILIES)})", "add an inf2/trn1 family")
    if spec.engine.name == "vllm":
        return chosen
    return _narrowed(chosen, LEGACY_ENGINE_FAMILIES,
                     f"engine {spec.engine.name} runs on {', '.join(LEGACY_ENGINE_FAMILIES)}",
                     "use engine vllm or add an inf2/trn1 family")


def check_engine_support(spec: ModelDeploymentSpec) -> None:
    """What only vLLM can do (the CRD's CEL rules say the same; `plan` runs without an API server to apply them)."""
    if spec.engine.name == "vllm":
        return
    wanted = [
        what
        for what, asked in (
            (f"{spec.model.dtype} weights", spec.model.dtype in ("fp8", "int8")),
            ("an fp8 KV cache", spec.model.kv_cache_dtype == "fp8"),
            ("prefix caching", spec.engine.prefix_caching),
            (f"{spec.accelerator.instance_type}", (spec.accelerator.instance_type or "").startswith("trn2")),
        )
        if asked
    ]
    if wanted:
        raise ValueError(f"engine {spec.engine.name} cannot serve with {' and '.join(wanted)}; use engine vllm")


def _check_adapter_names(spec: ModelDeploymentSpec) -> None:
    """An adapter named like the model would shadow it (the CRD checks an explicit servedModelName only)."""
    served = served_model_name(spec)
    if any(adapter.name == served for adapter in spec.adapters):
        raise ValueError(f"adapter {served!r} has the served model's name; rename the adapter")


def served_model_name(spec: ModelDeploymentSpec) -> str:
    """What clients put in `model`: the spec's choice, else the source's last path segment."""
    if spec.model.served_model_name:
        return spec.model.served_model_name
    return spec.model.source.split("://", 1)[1].rstrip("/").rsplit("/", 1)[-1]


def validate_names(name: str, namespace: str, *, kind: str = "ModelDeployment", suffix: str = "",
                   child: str = "Service") -> None:
    """Children are named after the resource (`name` + `suffix`, e.g. a cascade's `-gateway`): when they cannot
    be, an ObjectProblem (a ValueError too) naming the resource's kind, which the operator reports as an invalid
    object rather than a sizing failure."""
    service = f"{name}{suffix}"
    named = f"the {child} named after it" if not suffix else f"its {child} {service!r}"
    object_kind = child.split()[-1]  # "gateway Service": the limit is a Service name's
    if len(service) > labels.MAX_NAME_LENGTH:
        longest = labels.MAX_NAME_LENGTH - len(suffix)
        limit = (f"{named} allows at most {labels.MAX_NAME_LENGTH}: use a shorter {kind} name" if not suffix else
                 f"{named} would be {len(service)}, and a {object_kind} name allows at most {labels.MAX_NAME_LENGTH}: "
                 f"use a shorter {kind} name (at most {longest} characters)")
        raise ObjectProblem.at(("metadata", "name"), kind, f"{kind} name {name!r} is {len(name)} characters; {limit}",
                               name)
    if not _DNS_1035.match(service):
        raise ObjectProblem.at(("metadata", "name"), kind, (
            f"{kind} name {name!r} cannot name {named}: use lowercase letters, digits and '-', starting with a "
            f"letter and ending with a letter or digit (rename the {kind})"
        ), name)
    if not namespace or len(namespace) > labels.MAX_NAME_LENGTH or not _DNS_1123.match(namespace):
        raise ObjectProblem.at(("metadata", "namespace"), kind,
                               f"namespace {namespace!r} is not a valid Kubernetes namespace name", namespace)


def _metadata(name: str, namespace: str, engine: str, annotations: dict[str, str] | None = None) -> dict:
    meta: dict = {"name": name, "namespace": namespace, "labels": labels.common_labels(name, engine)}
    if annotations:
        meta["annotations"] = annotations
    return meta


def _service_account(name: str, namespace: str, spec: ModelDeploymentSpec) -> tuple[dict | None, str | None]:
    """(the ServiceAccount to create, the name pods use): an existing one, one with an IAM role, or none."""
    account = spec.service_account
    if account.name:
        return None, account.name
    if account.role_arn:
        obj = {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _metadata(name, namespace, spec.engine.name, {labels.ROLE_ARN: account.role_arn}),
            "automountServiceAccountToken": False,
        }
        return obj, name
    return None, None


def _revision(spec: ModelDeploymentSpec) -> str | None:
    if spec.model.revision is not None and spec.model.source.startswith("s3://"):
        raise ValueError("model.revision applies to hf:// sources only; an s3:// prefix is already one version")
    return spec.model.revision


def render_model_deployment(
    name: str,
    namespace: str,
    spec: ModelDeploymentSpec,
    replicas: int,
    *,
    images: EngineImages | None = None,
) -> RenderedModel:
    """The desired children of ModelDeployment `namespace/name` at `replicas` replicas (decided by the caller).

    Raises SizingError when the model does not fit as asked and ValueError for names or settings that cannot work.
    Objects carry no ownerReferences (the caller adopts them) and are in canonical form, so a resync is a no-op.
    """
    validate_names(name, namespace)
    _check_adapter_names(spec)
    if replicas < 0:
        raise ValueError(f"replicas must be 0 or more, got {replicas}")
    check_engine_support(spec)
    images = images or EngineImages()
    sizing = size(sizing_request(spec))
    engine = get_engine(spec.engine.name)
    served = served_model_name(spec)
    launch = engine.launch(
        EngineInputs(
            model=engine_model(spec),
            served_model_name=served,
            tensor_parallel=sizing.tensor_parallel,
            max_num_seqs=spec.batching.max_num_seqs,
            max_model_len=spec.model.max_model_len,
            dtype=spec.model.dtype,
            kv_cache_dtype=spec.model.kv_cache_dtype,
            prefix_caching=spec.engine.prefix_caching,
            compile_cache=spec.compile_cache is not None,
            revision=_revision(spec),
            family=sizing.instance.family,
            compile_timeout_seconds=compile_seconds(sizing),
            feature_args=(
                *speculative_args(spec.speculative_decoding, sizing.instance.family, spec.model.max_model_len),
                *lora_args(spec.adapters),
            ),
        )
    )
    resources = replica_resources(spec, sizing)
    account, account_name = _service_account(name, namespace, spec)
    selector = labels.selector_labels(name)
    inputs = PodInputs(name=name, engine=spec.engine.name, launch=launch, resources=resources, images=images,
                       service_account=account_name, served_model_name=served)
    artifact = ArtifactInputs(
        model=spec.model.source, revision=spec.model.revision, engine=spec.engine.name,
        image=engine_image(spec, inputs, sizing.instance.name), target=sizing.instance.accelerator,
        tensor_parallel=sizing.tensor_parallel, max_num_seqs=spec.batching.max_num_seqs,
        max_model_len=spec.model.max_model_len, dtype=spec.model.dtype, kv_cache_dtype=spec.model.kv_cache_dtype,
        args=graph_args(engine_args(spec, launch)), env=graph_env(engine_env(spec, launch)),
        companions=tuple(f"{download.source}@{download.revision or ''}"
                         for download in speculator_download(spec.speculative_decoding)),
    )
    key = artifact_key(artifact)
    prefix = keyed_prefix(spec.compile_cache.uri, key) if spec.compile_cache is not None else None
    inputs = replace(inputs, artifact_key=key, artifact_manifest=artifact.canonical(), artifact_prefix=prefix)
    template = pod_template(spec, inputs, sizing.instance.name)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(name, namespace, spec.engine.name),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(selector)},
            # Surge one replica and keep every serving one until it is ready: Neuron capacity is scarce, but
            # dropping a serving replica during a minutes-long start is worse.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "progressDeadlineSeconds": resources.startup_seconds + PROGRESS_MARGIN_SECONDS,
            "template": template,
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(name, namespace, spec.engine.name),
        "spec": {
            "type": spec.service.type,
            "selector": dict(selector),
            "ports": [{"name": PORT_NAME, "port": spec.service.port, "targetPort": PORT_NAME, "protocol": "TCP"}],
        },
    }
    # One replica at a time may be disrupted (maxUnavailable, not minAvailable, so a single replica never blocks a
    # node drain), and a pod that is not ready yet (still loading) may always be evicted.
    budget = {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(name, namespace, spec.engine.name),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": dict(selector)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }
    objects = [obj for obj in (account, deployment, service, budget) if obj is not None]
    return RenderedModel(
        sizing=sizing,
        objects=objects,
        selector=selector,
        endpoint=f"http://{name}.{namespace}.svc.cluster.local:{spec.service.port}/v1",
        served_model_name=served,
        artifact_key=key,
        artifact_prefix=prefix,
    )
