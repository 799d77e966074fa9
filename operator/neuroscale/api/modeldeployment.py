"""ModelDeployment: one model served by a Neuron-capable engine, sized, scheduled and (optionally) autoscaled."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from neuroscale.api.common import (
    CONDITIONS_FIELD,
    DNS_LABEL,
    Condition,
    EnvVar,
    HttpUrl,
    SecretKeyRef,
    Toleration,
    default_object,
)
from neuroscale.api.schema import ApiModel, Rule, crd_rules, refused
from neuroscale.sizing.catalog import CATALOG

InstanceTypeName = Literal[tuple(CATALOG)]  # type: ignore[valid-type]
Engine = Literal["vllm", "tgi", "djl-lmi"]
WeightDtype = Literal["bf16", "fp16", "fp8", "int8"]

# hf://org/name or s3://bucket/prefix: the two places a Neuron engine can load weights from.
MODEL_SOURCE = r"^(hf://[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*|s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?)$"
S3_URI = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"
# TGI's and DJL-LMI's Neuron backends run on Inferentia2 and Trainium1 only (NEURON.md "Serving engines").
LEGACY_ENGINE_FAMILIES = ("inf2", "trn1", "trn1n")


def _allowed_tp_rule() -> str:
    """CEL: the tensor-parallel degree must be one the instance type supports (generated from the catalog)."""
    entries = ", ".join(f"'{name}': {list(it.allowed_tp)}" for name, it in CATALOG.items())
    return (
        "!has(self.instanceType) || !has(self.tensorParallelDegree) || "
        f"self.tensorParallelDegree in {{{entries}}}[self.instanceType]"
    )


TP_RULE = Rule(_allowed_tp_rule(), "tensorParallelDegree is not supported on this instance type")
REPLICAS_RULE = Rule("self.minReplicas <= self.maxReplicas", "minReplicas must not exceed maxReplicas")
ENGINE_FEATURES_RULE = Rule(
    "self.engine.name == 'vllm' || (self.model.kvCacheDtype == 'auto' && "
    "(self.model.dtype == 'bf16' || self.model.dtype == 'fp16') && !self.engine.prefixCaching)",
    "fp8/int8 weights, an fp8 KV cache and prefix caching need engine vllm",
)
TRN2_RULE = Rule(
    "self.engine.name == 'vllm' || !has(self.accelerator.instanceType) || "
    "!self.accelerator.instanceType.startsWith('trn2')",
    "trn2 instances need engine vllm (TGI and DJL-LMI support inf2 and trn1 only)",
)


class ModelSpec(ApiModel):
    """Which model to serve and the shapes it is compiled for."""

    source: str = Field(
        description="Where the weights live: hf://org/name (Hugging Face Hub) or s3://bucket/prefix.",
        max_length=512,
        pattern=MODEL_SOURCE,
    )
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit).", max_length=128)
    architecture: str | None = Field(
        default=None,
        max_length=64,
        description="Known architecture for sizing (e.g. llama-3.1-8b) when it cannot be read from the source name.",
    )
    parameters_billions: float | None = Field(
        default=None, gt=0, le=2000, description="Parameter count in billions, for sizing an unknown model."
    )
    dtype: WeightDtype = Field(
        default="bf16", description="Weight precision. fp8/int8 quantize weights through the Neuron config (vLLM)."
    )
    kv_cache_dtype: Literal["auto", "fp8"] = Field(
        default="auto", description="KV-cache precision: auto (same as activations) or fp8 (vLLM only)."
    )
    max_model_len: int = Field(
        default=4096, ge=128, le=131072, description="Maximum tokens per sequence (prompt + output); compiled in."
    )
    served_model_name: str | None = Field(
        default=None,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
        description="Model name clients send in requests; defaults to the last segment of the source.",
    )


class EngineSpec(ApiModel):
    """The serving engine and how to run it."""

    name: Engine = Field(
        default="vllm",
        description="vllm (recommended, NxD Inference), tgi (Neuron backend in maintenance), djl-lmi (legacy).",
    )
    image: str | None = Field(default=None, max_length=512, description="Container image override.")
    args: list[Annotated[str, Field(max_length=1024)]] = Field(
        default_factory=list,
        max_length=64,
        description="Extra engine arguments, appended as a list (never through a shell).",
    )
    env: list[EnvVar] = Field(default_factory=list, max_length=64, description="Extra literal environment variables.")
    hub_token_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding a Hugging Face token, exposed to the engine as HF_TOKEN."
    )
    prefix_caching: bool = Field(
        default=False, description="Enable automatic prefix caching (vLLM on Neuron SDK 2.24 or later)."
    )


class AcceleratorSpec(ApiModel):
    """Instance and NeuronCores; anything left out is chosen by sizing."""

    model_config = crd_rules(TP_RULE)

    instance_type: InstanceTypeName | None = Field(  # type: ignore[valid-type]
        default=None, description="EC2 instance type; omitted → the cheapest that fits."
    )
    tensor_parallel_degree: int | None = Field(
        default=None, ge=1, le=64, description="NeuronCores the model is sharded over; omitted → the smallest that fits."
    )
    families: list[Literal["inf2", "trn1", "trn1n", "trn2"]] = Field(
        default_factory=list,
        max_length=4,
        description="Instance families sizing may choose from (those your node pools offer); empty = any.",
    )
    scheduler_name: str | None = Field(
        default=None,
        max_length=253,
        description="Scheduler for the pods, e.g. the Neuron scheduler extension (needed for multi-device pods).",
    )

    @model_validator(mode="after")
    def _tp_supported(self) -> AcceleratorSpec:
        if (self.instance_type is not None and self.tensor_parallel_degree is not None
                and self.tensor_parallel_degree not in CATALOG[self.instance_type].allowed_tp):
            raise TP_RULE.refused()
        return self


class BatchingSpec(ApiModel):
    """Continuous batching (fixed at compile time on Neuron)."""

    max_num_seqs: int = Field(default=8, ge=1, le=256, description="Maximum sequences decoded together per replica.")


class CompileCacheSpec(ApiModel):
    """Where compiled Neuron artifacts are kept so a new replica does not recompile (minutes to an hour)."""

    uri: str = Field(description="S3 URI of precompiled artifacts, restored by an init container.", pattern=S3_URI,
                     max_length=1024)


class MetricsSpec(ApiModel):
    """Per-resource override of where the autoscaler reads engine metrics."""

    prometheus_url: HttpUrl | None = Field(
        default=None, max_length=1024,
        description="Prometheus (or AMP workspace) query URL. Queried without the operator's credentials (bearer "
        "token, SigV4): those go only to the operator's own --prometheus-url. No credentials in the URL.",
    )


class AutoscalingSloSpec(ApiModel):
    """The service level the autoscaler keeps: how long a request may wait before it is served."""

    queue_wait_seconds: float | None = Field(
        default=None, gt=0, le=3600, description="Longest a request may queue before an engine takes it; default 10."
    )
    time_to_first_token_seconds: float | None = Field(
        default=None, gt=0, le=3600,
        description="Longest until a request's first token; kept as a queue-wait bound (prefill time not deducted).",
    )


class AutoscalingSpec(ApiModel):
    """Token-throughput autoscaling. When enabled the operator owns the replica count."""

    model_config = crd_rules(REPLICAS_RULE)

    enabled: bool = Field(default=True, description="Scale on generated tokens/s and queue depth.")
    min_replicas: int = Field(default=1, ge=1, le=1000, description="Never fewer replicas (Neuron cold starts are minutes).")
    max_replicas: int = Field(default=4, ge=1, le=1000, description="Never more replicas.")
    target_tokens_per_second: float | None = Field(
        default=None, gt=0, description="Generated tokens/s one replica should carry; omitted → derived from sizing."
    )
    queue_depth_target: float | None = Field(
        default=None, gt=0, description="Waiting requests per replica that trigger a scale-up."
    )
    scale_up_stabilization_seconds: int | None = Field(
        default=None, ge=0, le=3600, description="Look-back before scaling up; omitted → derived from the cold start."
    )
    scale_down_stabilization_seconds: int | None = Field(
        default=None, ge=0, le=86400, description="Look-back before scaling down; omitted → derived from the cold start."
    )
    max_scale_up_step: int | None = Field(default=None, ge=1, description="Most replicas added in one decision.")
    max_scale_down_step: int | None = Field(default=None, ge=1, description="Most replicas removed in one decision.")
    cold_start_seconds: int = Field(
        default=600, ge=0, le=7200, description="How long a new replica takes to serve (load, and compile on a cache miss)."
    )
    predictive: bool = Field(default=True, description="Look ahead by the cold start using the recent demand trend.")
    slo: AutoscalingSloSpec | None = Field(
        default=None, description="Service level that drives the decision (queue wait or time to first token)."
    )
    metrics: MetricsSpec = Field(
        default_factory=MetricsSpec, description="Metrics source override.", json_schema_extra={"default": {}}
    )

    @model_validator(mode="after")
    def _replica_bounds(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise REPLICAS_RULE.refused()
        return self


class ServiceSpec(ApiModel):
    """How the model is exposed inside the cluster."""

    type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(default="ClusterIP", description="Service type.")
    port: int = Field(default=8000, ge=1, le=65535, description="Service port (OpenAI-compatible HTTP).")


class ServiceAccountSpec(ApiModel):
    """Pod identity for S3 model weights and the compile cache."""

    name: str | None = Field(
        default=None, max_length=253, pattern=DNS_LABEL, description="Use this existing ServiceAccount."
    )
    role_arn: str | None = Field(
        default=None,
        max_length=2048,
        pattern=r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$",
        description="IAM role for a ServiceAccount the operator creates (IRSA annotation).",
    )


class ResourcesSpec(ApiModel):
    """Host CPU and memory for a replica; omitted → derived from the instance type."""

    cpu: str | None = Field(default=None, pattern=QUANTITY, max_length=32, description="CPU request, e.g. 28.")
    memory: str | None = Field(default=None, pattern=QUANTITY, max_length=32, description="Memory request, e.g. 100Gi.")


class SchedulingSpec(ApiModel):
    """Extra placement constraints on top of the Neuron defaults."""

    node_selector: dict[str, str] = Field(
        default_factory=dict, max_length=32, description="Extra node labels the pods require."
    )
    tolerations: list[Toleration] = Field(default_factory=list, max_length=16, description="Extra tolerations.")
    priority_class_name: str | None = Field(default=None, max_length=253, description="PriorityClass of the pods.")



class ModelDeploymentSpec(ApiModel):
    """Desired state of a ModelDeployment."""

    model_config = crd_rules(ENGINE_FEATURES_RULE, TRN2_RULE)

    model: ModelSpec = Field(description="The model to serve.")
    engine: EngineSpec = Field(**default_object(EngineSpec, "Serving engine."))
    accelerator: AcceleratorSpec = Field(**default_object(AcceleratorSpec, "Instance and cores."))
    batching: BatchingSpec = Field(**default_object(BatchingSpec, "Continuous batching."))
    compile_cache: CompileCacheSpec | None = Field(default=None, description="Precompiled Neuron artifacts in S3.")
    replicas: int = Field(
        default=1, ge=0, le=1000, description="Replicas when autoscaling is off (also the scale subresource)."
    )
    autoscaling: AutoscalingSpec | None = Field(default=None, description="Token-throughput autoscaling.")
    service: ServiceSpec = Field(**default_object(ServiceSpec, "Service exposure."))
    service_account: ServiceAccountSpec = Field(**default_object(ServiceAccountSpec, "Pod identity."))
    resources: ResourcesSpec = Field(**default_object(ResourcesSpec, "Host CPU and memory."))
    scheduling: SchedulingSpec = Field(**default_object(SchedulingSpec, "Placement."))

    @model_validator(mode="after")
    def _engine_supports(self) -> ModelDeploymentSpec:
        if self.engine.name == "vllm":
            return self
        if (self.model.kv_cache_dtype != "auto" or self.model.dtype not in ("bf16", "fp16")
                or self.engine.prefix_caching):
            raise ENGINE_FEATURES_RULE.refused()
        if (self.accelerator.instance_type or "").startswith("trn2"):
            raise TRN2_RULE.refused()
        # Not in the CRD (sizing narrows the families an engine may use); refused here rather than as a sizing failure.
        chosen = self.accelerator.families
        if chosen and not any(f in LEGACY_ENGINE_FAMILIES for f in chosen):
            raise refused(
                f"engine {self.engine.name} runs on {', '.join(LEGACY_ENGINE_FAMILIES)} only, but "
                f"accelerator.families allows {', '.join(chosen)}; use engine vllm or add an inf2/trn1 family"
            )
        return self


class SizingStatus(ApiModel):
    """What sizing chose, and why."""

    instance_type: str = Field(description="Chosen EC2 instance type.")
    tensor_parallel_degree: int = Field(description="NeuronCores the model is sharded over.")
    neuron_devices: int = Field(description="Neuron devices (chips) requested per replica.")
    weights_gib: float = Field(alias="weightsGiB", description="Weight memory, GiB.")
    kv_cache_gib: float = Field(alias="kvCacheGiB", description="KV-cache memory at full batch and length, GiB.")
    required_gib: float = Field(alias="requiredGiB", description="Total device memory needed, GiB.")
    capacity_gib: float = Field(alias="capacityGiB", description="Device memory of the chosen cores, GiB.")
    estimated_tokens_per_second: float = Field(description="Estimated generated tokens/s per replica at full batch.")
    explanation: str = Field(default="", description="Why this choice.")


class AutoscalingStatus(ApiModel):
    """The autoscaler's latest view and decision."""

    observed_tokens_per_second: float | None = Field(default=None, description="Generated tokens/s, all replicas.")
    queue_depth: float | None = Field(default=None, description="Requests waiting, all replicas.")
    desired_replicas: int | None = Field(default=None, description="Replicas the autoscaler wants.")
    last_decision: str | None = Field(default=None, description="The latest decision and its reason.")
    last_scale_time: str | None = Field(default=None, description="When replicas last changed (RFC 3339).")
    headroom_replicas: float | None = Field(
        default=None, description="Spare replicas kept for demand growth within one cold start (learned)."
    )
    slo_attainment_percent: float | None = Field(
        default=None, description="Share of control intervals whose estimated queue wait met the SLO."
    )
    state: dict | None = Field(
        default=None,
        description="Policy memory kept across operator restarts (internal).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class ModelDeploymentStatus(ApiModel):
    """Observed state of a ModelDeployment."""

    model_config = ApiModel.model_config | {"frozen": False}

    observed_generation: int | None = Field(default=None, description="Generation the status reflects.")
    conditions: list[Condition] = CONDITIONS_FIELD
    replicas: int | None = Field(default=None, description="Replicas of the serving Deployment.")
    ready_replicas: int | None = Field(default=None, description="Replicas ready to serve.")
    desired_replicas: int | None = Field(default=None, description="Replicas the operator asks for.")
    selector: str | None = Field(default=None, description="Label selector of the pods (scale subresource).")
    sizing: SizingStatus | None = Field(default=None, description="Chosen sizing.")
    cost_per_hour: float | None = Field(default=None, description="On-demand cost of the running replicas, USD/h.")
    cost_per_million_tokens: float | None = Field(
        default=None, description="Estimated USD per million generated tokens at full batch."
    )
    endpoint: str | None = Field(default=None, description="In-cluster OpenAI-compatible base URL.")
    served_model_name: str | None = Field(default=None, description="Model name clients send.")
    autoscaling: AutoscalingStatus | None = Field(default=None, description="Autoscaler view.")


class ModelDeployment(ApiModel):
    """A model served on AWS Neuron: sizing, Deployment, Service, disruption budget and autoscaling."""

    api_version: Literal["neuroscale.io/v1alpha1"] = "neuroscale.io/v1alpha1"
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    metadata: dict = Field(default_factory=dict)
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None
