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
from neuroscale.api.adapters import (
    ADAPTER_MODEL_NAME_RULE,
    ADAPTERS_ENGINE_RULE,
    ADAPTERS_TRN2_RULE,
    MAX_ADAPTERS,
    AdapterSpec,
)
from neuroscale.api.sources import MODEL_SOURCE, S3_URI
from neuroscale.api.speculative_decoding import EAGLE_TRN2_RULE, SPECULATION_ENGINE_RULE, SpeculativeDecodingSpec
from neuroscale.sizing.catalog import CATALOG

InstanceTypeName = Literal[tuple(CATALOG)]  # type: ignore[valid-type]
Engine = Literal["vllm", "tgi", "djl-lmi"]
WeightDtype = Literal["bf16", "fp16", "fp8", "int8"]

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
# Scale to zero is the autoscaler's decision (it wakes the deployment on a cascade gateway's demand): with
# autoscaling off, spec.replicas rules and minReplicas 0 would only look like it did something.
SCALE_TO_ZERO_RULE = Rule("self.enabled || self.minReplicas >= 1",
                          "minReplicas 0 (scale to zero) needs autoscaling enabled")
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
    mean_prompt_tokens: int | None = Field(
        default=None, ge=1, le=131072,
        description="Typical prompt tokens per request, for sizing (prefill costs time; code and RAG traffic is "
        "mostly input); omitted → 1024, capped to fit maxModelLen.",
    )
    mean_output_tokens: int | None = Field(
        default=None, ge=1, le=131072,
        description="Typical generated tokens per request, for sizing; omitted → 256 (at most maxModelLen / 4).",
    )
    max_time_per_output_token_ms: float | None = Field(
        default=None, gt=0, le=60000,
        description="Slowest acceptable decode at full batch, ms per generated token: sizing keeps to "
        "configurations that meet it; omitted → the lowest cost per token decides.",
    )


class CompileCacheSpec(ApiModel):
    """Where compiled Neuron artifacts are kept so a new replica does not recompile (minutes to an hour)."""

    uri: str = Field(
        description="S3 prefix holding compiled artifacts under <uri>/<artifact key>/: restored when the key's set "
        "is complete, uploaded by the first replica that compiled it. ModelDeployments with the same key share it.",
        pattern=S3_URI, max_length=1024)


class MetricsSpec(ApiModel):
    """Per-resource override of where the autoscaler reads engine metrics."""

    prometheus_url: HttpUrl | None = Field(
        default=None, max_length=1024,
        description="Prometheus (or AMP workspace) query URL. Queried without the operator's credentials (bearer "
        "token, SigV4): those go only to the operator's own --prometheus-url. No credentials in the URL.",
    )


# The cold start assumed when the spec declares none and no replica was measured yet (status.coldStart).
DEFAULT_COLD_START_SECONDS = 600.0


class AutoscalingSloSpec(ApiModel):
    """The service level the autoscaler keeps: how long a request may wait before it is served."""

    queue_wait_seconds: float | None = Field(
        default=None, gt=0, le=3600, description="Longest a request may queue before an engine takes it; default 10."
    )
    time_to_first_token_seconds: float | None = Field(
        default=None, gt=0, le=3600,
        description="Longest until a request's first token: the queue may take what the prefill of a mean prompt "
        "(batching.meanPromptTokens) at the replica's estimated prefill rate leaves, at least 0.1 s.",
    )


class AutoscalingSpec(ApiModel):
    """Token-throughput autoscaling. When enabled the operator owns the replica count."""

    model_config = crd_rules(REPLICAS_RULE, SCALE_TO_ZERO_RULE)

    enabled: bool = Field(default=True, description="Scale on generated tokens/s and queue depth.")
    min_replicas: int = Field(
        default=1, ge=0, le=1000,
        description="Never fewer replicas (Neuron cold starts are minutes). 0 scales to zero when idle, for a "
        "deployment behind an InferenceCascade: its gateway wakes it and serves from the next tier meanwhile.",
    )
    max_replicas: int = Field(default=4, ge=1, le=1000, description="Never more replicas.")
    target_tokens_per_second: float | None = Field(
        default=None, gt=0, description="Work one replica should carry, in generated tokens/s (prompt tokens count "
        "at their prefill cost); omitted → derived from sizing and the learned headroom (README \"Headroom\"). Set, it "
        "replaces the learned headroom: the policy keeps each replica at this load."
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
    cold_start_seconds: int | None = Field(
        default=None, ge=0, le=7200,
        description="How long a new replica takes to serve (load, and compile on a cache miss); omitted → the "
        "measured cold start (status.coldStart), or 600 before any replica was measured.",
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
        if not self.enabled and self.min_replicas == 0:
            raise SCALE_TO_ZERO_RULE.refused()
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

    model_config = crd_rules(ENGINE_FEATURES_RULE, TRN2_RULE, SPECULATION_ENGINE_RULE, EAGLE_TRN2_RULE,
                             ADAPTERS_ENGINE_RULE, ADAPTERS_TRN2_RULE, ADAPTER_MODEL_NAME_RULE)

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
    speculative_decoding: SpeculativeDecodingSpec | None = Field(
        default=None, description="Speculative decoding with an EAGLE head (vLLM)."
    )
    adapters: list[AdapterSpec] = Field(
        default_factory=list, max_length=MAX_ADAPTERS,
        description="LoRA adapters served next to the model, each under its own model name (vLLM, inf2/trn1).",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )

    @model_validator(mode="after")
    def _extensions_supported(self) -> ModelDeploymentSpec:
        names = [adapter.name for adapter in self.adapters]
        # The CRD's list-map key: the API server refuses a second adapter with a name already used.
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise refused(f"adapter names must be unique; more than one adapter is named {', '.join(duplicates)}")
        trn2 = (self.accelerator.instance_type or "").startswith("trn2")
        speculation = self.speculative_decoding
        for broken, rule in (
            (speculation is not None and self.engine.name != "vllm", SPECULATION_ENGINE_RULE),
            (speculation is not None and speculation.method == "eagle" and trn2, EAGLE_TRN2_RULE),
            (bool(self.adapters) and self.engine.name != "vllm", ADAPTERS_ENGINE_RULE),
            (bool(self.adapters) and trn2, ADAPTERS_TRN2_RULE),
            (self.model.served_model_name in names, ADAPTER_MODEL_NAME_RULE),
        ):
            if broken:
                raise rule.refused()
        return self

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
    speculator_gib: float | None = Field(
        default=None, alias="speculatorGiB", description="Device memory of the speculative-decoding head, GiB."
    )
    adapters_gib: float | None = Field(
        default=None, alias="adaptersGiB", description="Device memory of the LoRA adapter slots, GiB."
    )
    explanation: str = Field(default="", description="Why this choice.")


class AutoscalingStatus(ApiModel):
    """The autoscaler's latest view and decision."""

    observed_tokens_per_second: float | None = Field(default=None, description="Generated tokens/s, all replicas.")
    observed_prompt_tokens_per_second: float | None = Field(
        default=None, description="Prompt tokens/s, all replicas (engines that export them)."
    )
    observed_work_tokens_per_second: float | None = Field(
        default=None, description="Work the replicas served, in generated-token equivalents: generated tokens plus "
        "prompt tokens at their prefill cost. What the autoscaler scales on.",
    )
    running_requests: float | None = Field(default=None, description="Requests being served, all replicas.")
    kv_cache_usage_percent: float | None = Field(
        default=None, description="KV-cache usage, mean over the replicas, percent (vLLM only)."
    )
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
    measured_capacity_tokens_per_second: float | None = Field(
        default=None, description="Work one replica serves at full load, as the running and KV-cache gauges show it "
        "(README \"Measured capacity\"); absent while the sizing estimate is used alone."
    )
    state: dict | None = Field(
        default=None,
        description="Policy memory kept across operator restarts (internal).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class AdapterStatus(ApiModel):
    """A LoRA adapter the replicas serve."""

    name: str = Field(description="Model name clients send to use it.")
    source: str = Field(description="Where it was downloaded from.")
    rank: int = Field(description="Its LoRA rank.")


CompileCacheState = Literal["Hit", "Miss", "Compiling", "Uploading", "Ready", "Unknown"]


class CompileCacheStatus(ApiModel):
    """Where the compiled artifacts of the current spec are, and whether new replicas restore or compile them."""

    key: str = Field(description="Artifact key: a hash of everything that changes the compiled graph.")
    uri: str = Field(description="S3 prefix of this key's artifacts (<spec.compileCache.uri>/<key>/).")
    state: CompileCacheState = Field(
        description="Hit: complete artifacts exist, replicas restore them. Miss: none yet, the next replica "
        "compiles. Compiling: a replica is compiling. Uploading: a replica compiled and is uploading. Ready: the "
        "artifacts compiled here are uploaded. Unknown: S3 could not be checked (the CompileCache condition says why).")
    ready_seconds: float | None = Field(
        default=None, description="Seconds from the first replica's creation to Ready for this key (measured).")
    last_transition_time: str | None = Field(default=None, description="When key or state last changed (RFC 3339).")


class ColdStartSample(ApiModel):
    """One replica's cold start."""

    pod: str = Field(description="Pod name.")
    seconds: float = Field(description="Seconds from pod creation to Ready.")


class ColdStartStatus(ApiModel):
    """Measured time from a replica's creation to Ready, for the current artifact key."""

    key: str = Field(description="Artifact key the samples belong to (a new key starts over).")
    seconds: float = Field(description="Median of the recent samples: the autoscaler's cold start when "
                           "spec.autoscaling.coldStartSeconds is omitted.")
    samples: int = Field(description="Replicas measured for this key.")
    recent: list[ColdStartSample] = Field(default_factory=list, description="The latest samples, newest last.")


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
    adapters: list[AdapterStatus] | None = Field(default=None, description="LoRA adapters served, by model name.")
    autoscaling: AutoscalingStatus | None = Field(default=None, description="Autoscaler view.")
    compile_cache: CompileCacheStatus | None = Field(default=None, description="Compiled artifacts in S3.")
    cold_start: ColdStartStatus | None = Field(default=None, description="Measured replica cold start.")


class ModelDeployment(ApiModel):
    """A model served on AWS Neuron: sizing, Deployment, Service, disruption budget and autoscaling."""

    api_version: Literal["neuroscale.io/v1alpha1"] = "neuroscale.io/v1alpha1"
    kind: Literal["ModelDeployment"] = "ModelDeployment"
    metadata: dict = Field(default_factory=dict)
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None
