"""InferenceCascade: an OpenAI-compatible gateway that tries ordered model tiers, cheapest first, with a cache."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from neuroscale.api.common import (
    CONDITIONS_FIELD, DNS_LABEL, HTTP_URL, Condition, HttpUrl, SecretKeyRef, default_object,
)
from neuroscale.api.adapters import ADAPTER_NAME
from neuroscale.api.modeldeployment import QUANTITY, ServiceAccountSpec
from neuroscale.api.schema import ApiModel, Rule, crd_rules, refused

__all__ = ["AWS_REGION", "HTTP_URL", "TIER_KINDS"]  # HTTP_URL: the shared pattern, still importable from here

AWS_REGION = r"^[a-z]{2}(-[a-z]+)+-[0-9]+$"
TIER_KINDS = ("modelDeployment", "openai", "bedrock", "sagemaker")

# Structural schemas have no unions: a tier is an object with one optional member per kind, and CEL keeps exactly one.
ONE_KIND_RULE = Rule(
    " + ".join(f"(has(self.{kind}) ? 1 : 0)" for kind in TIER_KINDS) + " == 1",
    "set exactly one of modelDeployment, openai, bedrock or sagemaker",
)
DEFAULT_MAX_TIER_RULE = Rule(
    "!has(self.escalation) || !has(self.escalation.defaultMaxTier) || "
    "self.tiers.exists(t, t.name == self.escalation.defaultMaxTier)",
    "escalation.defaultMaxTier must name one of the tiers",
)
TRUSTED_HEADER_RULE = Rule(
    "self.mode != 'trustedHeader' || has(self.trustedHeader)", "auth mode trustedHeader needs auth.trustedHeader",
)
PROXY_PROOF_RULE = Rule(
    "(has(self.proxyCidrs) && size(self.proxyCidrs) > 0) || (has(self.sharedSecretHeader) && "
    "has(self.sharedSecretRef))",
    "trustedHeader needs proxyCidrs or sharedSecretHeader with sharedSecretRef: otherwise any client names any tenant",
)
MODEL_NAME_RULE = Rule(
    "!has(self.modelName) || self.tiers.all(t, t.name != self.modelName)",
    "modelName must differ from every tier name",
)


class ModelDeploymentTier(ApiModel):
    """A ModelDeployment in the cascade's namespace; its Service and served model name are resolved by the operator."""

    name: str = Field(description="ModelDeployment name.", max_length=63, pattern=DNS_LABEL)
    adapter: str | None = Field(
        default=None, max_length=63, pattern=ADAPTER_NAME,
        description="One of its LoRA adapters (spec.adapters[].name) to use instead of its base model.",
    )
    wake_hold_seconds: float = Field(
        default=10.0, ge=0, le=600,
        description="When the ModelDeployment is scaled to zero (minReplicas 0): how long a request may wait for it "
        "to wake before the next tier serves it; a wake expected to take longer is bridged at once.",
    )


class OpenAITier(ApiModel):
    """An external OpenAI-compatible endpoint."""

    url: HttpUrl = Field(
        description="Base URL including the API prefix, e.g. https://api.example.com/v1. No credentials: the key "
        "comes from apiKeySecretRef.", max_length=2048,
    )
    model: str = Field(description="Model name the endpoint expects in requests.", min_length=1, max_length=256)
    api_key_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the API key; mounted into the gateway as an environment variable."
    )


class BedrockTier(ApiModel):
    """An Amazon Bedrock model, called through Converse / ConverseStream with the gateway pod's IAM identity."""

    model_id: str = Field(
        description="Bedrock model id or inference profile ARN, e.g. us.anthropic.claude-3-5-haiku-20241022-v1:0.",
        min_length=1, max_length=2048,
    )
    region: str = Field(description="AWS region of the Bedrock runtime.", max_length=32, pattern=AWS_REGION)
    endpoint_url: HttpUrl | None = Field(
        default=None, description="Runtime endpoint override (a VPC interface endpoint).", max_length=2048,
    )


class SageMakerTier(ApiModel):
    """An Amazon SageMaker AI real-time endpoint (e.g. an LMI container), via InvokeEndpoint(WithResponseStream)."""

    endpoint_name: str = Field(
        description="SageMaker endpoint name.", max_length=63, pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$"
    )
    region: str = Field(description="AWS region of the endpoint.", max_length=32, pattern=AWS_REGION)
    inference_component: str | None = Field(
        default=None, description="Inference component name, when the endpoint hosts several.", max_length=63
    )
    payload: Literal["messages", "inputs"] = Field(
        default="messages",
        description="Request schema: messages (OpenAI chat, what LMI accepts) or inputs ({inputs, parameters}).",
    )
    endpoint_url: HttpUrl | None = Field(
        default=None, description="Runtime endpoint override (a VPC interface endpoint).", max_length=2048,
    )


class TierTimeouts(ApiModel):
    """How long the gateway waits on this tier before it counts as failed (and escalates, if allowed)."""

    connect_seconds: float = Field(default=2.0, gt=0, le=60, description="Time to connect.")
    first_token_seconds: float = Field(default=30.0, gt=0, le=600, description="Time to the first streamed chunk.")
    total_seconds: float = Field(default=300.0, gt=0, le=3600, description="Upper bound on the whole exchange.")


class TierPricing(ApiModel):
    """What a tier's tokens cost, for chargeback."""

    prompt_per_million_tokens: float = Field(default=0.0, ge=0, le=10_000, description="USD per million prompt tokens.")
    completion_per_million_tokens: float = Field(
        default=0.0, ge=0, le=10_000, description="USD per million generated tokens."
    )


class CascadeTier(ApiModel):
    """One tier of the cascade: exactly one of modelDeployment, openai, bedrock or sagemaker."""

    model_config = crd_rules(ONE_KIND_RULE)

    name: str = Field(
        description="Tier name: clients may send it as `model` to target this tier; reported in status and metrics.",
        max_length=63, pattern=DNS_LABEL,
    )
    model_deployment: ModelDeploymentTier | None = Field(default=None, description="A ModelDeployment tier.")
    openai: OpenAITier | None = Field(default=None, description="An external OpenAI-compatible tier.")
    bedrock: BedrockTier | None = Field(default=None, description="An Amazon Bedrock tier.")
    sagemaker: SageMakerTier | None = Field(default=None, description="An Amazon SageMaker AI endpoint tier.")
    max_prompt_tokens: int | None = Field(
        default=None, ge=1, le=10_000_000,
        description="Skip this tier when the estimated prompt is longer (prompt-length escalation).",
    )
    timeouts: TierTimeouts = Field(**default_object(TierTimeouts, "Timeouts for this tier."))
    pricing: TierPricing | None = Field(
        default=None, description="USD per million tokens for chargeback (the Bedrock / SageMaker price table); "
        "omitted: a ModelDeployment tier's status.costPerMillionTokens for generated tokens, $0 otherwise.",
    )

    @model_validator(mode="after")
    def _exactly_one_kind(self) -> CascadeTier:
        # The CRD's CEL rule says the same; this catches it where no API server ran (plan, tests).
        if sum(getattr(self, _snake(k)) is not None for k in TIER_KINDS) != 1:
            raise ONE_KIND_RULE.refused()
        return self

    @property
    def kind(self) -> str:
        """Which member is set: modelDeployment, openai, bedrock or sagemaker."""
        return next(k for k in TIER_KINDS if getattr(self, _snake(k)) is not None)


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


class EscalationSpec(ApiModel):
    """When a request moves on to the next tier."""

    on_upstream_error: bool = Field(default=True, description="Escalate on connection errors, timeouts, 429 and 5xx.")
    on_empty_answer: bool = Field(default=True, description="Escalate when the answer is empty.")
    on_refusal: bool = Field(default=True, description="Escalate when the answer matches a refusal pattern.")
    refusal_patterns: list[Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=32,
        description="Case-insensitive regular expressions for refusals; omitted → the gateway's built-in list.",
    )
    min_mean_logprob: float | None = Field(
        default=None, le=0, ge=-100,
        description="Escalate when the mean token log-probability of an answer is below this.",
    )
    stream_inspect_tokens: int = Field(
        default=16, ge=0, le=4096,
        description="Streaming: chunks of a non-final tier judged before the stream is committed to the client.",
    )
    allow_client_hint: bool = Field(default=True, description="Honour the client's tier choice (model and headers).")
    default_max_tier: str | None = Field(
        default=None, max_length=63, description="Highest tier a request may reach unless the client asks otherwise."
    )


class GatewayResources(ApiModel):
    """CPU and memory of one gateway replica; omitted → 500m and 512Mi (1536Mi with a local semantic embedder)."""

    cpu: str | None = Field(default=None, pattern=QUANTITY, max_length=32, description="CPU request, e.g. 500m.")
    memory: str | None = Field(
        default=None, pattern=QUANTITY, max_length=32, description="Memory request and limit, e.g. 512Mi."
    )


class GatewaySpec(ApiModel):
    """The gateway Deployment and Service."""

    replicas: int = Field(default=2, ge=0, le=100, description="Gateway replicas.")
    image: str | None = Field(
        default=None, max_length=512, description="Image override; default: the operator's own release image."
    )
    resources: GatewayResources = Field(**default_object(GatewayResources, "CPU and memory."))
    service_type: Literal["ClusterIP", "NodePort", "LoadBalancer"] = Field(
        default="ClusterIP", description="Service type."
    )
    port: int = Field(default=8080, ge=1, le=65535, description="Service port (OpenAI-compatible HTTP).")
    service_account: ServiceAccountSpec = Field(**default_object(
        ServiceAccountSpec, "Pod identity: needed for Bedrock and SageMaker tiers (IRSA role or existing account)."))
    max_body_bytes: int = Field(default=1 << 20, ge=1024, le=64 << 20, description="Largest accepted request body.")
    drain_seconds: int = Field(
        default=60, ge=0, le=3600,
        description="On shutdown (rollout, eviction, scale-in) requests and streams in flight may finish for this "
        "long before the gateway exits; the pod's grace period covers it.",
    )


class ApiKeysAuth(ApiModel):
    """Tenants and the SHA-256 digests of their API keys, in a Secret the gateway mounts and re-reads on change."""

    secret_name: str | None = Field(
        default=None, max_length=253, pattern=r"^[a-z0-9]([-.a-z0-9]*[a-z0-9])?$",
        description="Secret holding the tenants file; omitted: <cascade name>-api-keys. Until it exists every request "
        "gets 401.",
    )
    secret_key: str = Field(
        default="tenants.yaml", max_length=253, pattern=r"^[-._a-zA-Z0-9]+$",
        description="Key of the tenants file in the Secret (format: README, 'Tenants, quotas and chargeback').",
    )


class TrustedHeaderAuth(ApiModel):
    """The tenant is named by a header an authenticating proxy in front of the gateway sets."""

    model_config = crd_rules(PROXY_PROOF_RULE)

    header: str = Field(max_length=128, pattern=r"^[A-Za-z0-9-]+$", description="Header carrying the tenant name.")
    proxy_cidrs: list[Annotated[str, Field(max_length=64, pattern=r"^[0-9a-fA-F.:]+/[0-9]{1,3}$")]] | None = Field(
        default=None, max_length=16, description="Address ranges the proxy connects from; others get 401.",
    )
    shared_secret_header: str | None = Field(
        default=None, max_length=128, pattern=r"^[A-Za-z0-9-]+$",
        description="Header in which the proxy presents the secret in sharedSecretRef.",
    )
    shared_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key the proxy's header must equal; mounted into the gateway as env.",
    )

    @model_validator(mode="after")
    def _proxy_proven(self) -> TrustedHeaderAuth:
        if not self.proxy_cidrs and not (self.shared_secret_header and self.shared_secret_ref):
            raise PROXY_PROOF_RULE.refused()
        return self


class AuthSpec(ApiModel):
    """Who may call the gateway, and which tenant each caller is (cache scope, quotas and chargeback follow it)."""

    model_config = crd_rules(TRUSTED_HEADER_RULE)

    mode: Literal["apiKeys", "trustedHeader", "none"] = Field(
        default="apiKeys", description="apiKeys: bearer keys from a Secret; trustedHeader: a proxy names the tenant; "
        "none: no authentication, one tenant ('default').",
    )
    api_keys: ApiKeysAuth = Field(**default_object(ApiKeysAuth, "apiKeys: where the tenants file is."))
    trusted_header: TrustedHeaderAuth | None = Field(default=None, description="trustedHeader: the proxy's header.")

    @model_validator(mode="after")
    def _mode_configured(self) -> AuthSpec:
        if self.mode == "trustedHeader" and self.trusted_header is None:
            raise TRUSTED_HEADER_RULE.refused()
        return self


class QuotaSpec(ApiModel):
    """Defaults for tenants whose entry sets no limit; counted in the cacheTierRef's Redis across replicas."""

    requests_per_minute: int | None = Field(default=None, ge=1, le=100_000_000, description="Requests a minute.")
    tokens_per_minute: int | None = Field(
        default=None, ge=1, le=10_000_000_000, description="Prompt + generated tokens a minute."
    )


class RoutingSpec(ApiModel):
    """How the gateway spreads a ModelDeployment tier's requests over its replicas."""

    policy: Literal["prefix", "session", "least-loaded", "service"] = Field(
        default="prefix",
        description="prefix: the gateway picks the replica by consistent hashing with bounded load over the session "
        "header when sent, else the prompt's opening (system prompt and first user message), so a conversation or "
        "shared document keeps hitting one replica's prefix cache; session: the session header only (least-loaded "
        "without one); least-loaded: fewest requests in flight; service: through the Service (kube-proxy).",
    )
    load_factor: float = Field(
        default=1.25, gt=1.0, le=10.0,
        description="Bounded load: a replica takes no request of average prompt length past loadFactor × the mean "
        "in flight (a longer prompt, with more cache to reuse, gets up to twice the slack; a shorter one less); "
        "the next replica on the ring takes it.",
    )
    session_header: str = Field(
        default="x-neuroscale-session", max_length=128, pattern=r"^[A-Za-z0-9-]+$",
        description="Request header carrying the client's session key.",
    )


class CacheTierRef(ApiModel):
    """A CacheTier in the cascade's namespace."""

    name: str = Field(description="CacheTier name.", max_length=63, pattern=DNS_LABEL)


class InferenceCascadeSpec(ApiModel):
    """Desired state of an InferenceCascade."""

    model_config = crd_rules(DEFAULT_MAX_TIER_RULE, MODEL_NAME_RULE)

    tiers: list[CascadeTier] = Field(
        min_length=1, max_length=8, description="Ordered cheapest first; the last tier is the fallback.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    model_name: str | None = Field(
        default=None, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$",
        description="Model name clients send for the whole cascade; omitted → the InferenceCascade's name.",
    )
    escalation: EscalationSpec = Field(**default_object(EscalationSpec, "Escalation policy."))
    cache_tier_ref: CacheTierRef | None = Field(
        default=None, description="Response cache; while the CacheTier is missing the gateway serves uncached."
    )
    gateway: GatewaySpec = Field(**default_object(GatewaySpec, "Gateway Deployment and Service."))
    routing: RoutingSpec = Field(**default_object(RoutingSpec, "Replica choice for ModelDeployment tiers."))
    auth: AuthSpec = Field(**default_object(AuthSpec, "Authentication of callers; default: API keys."))
    quotas: QuotaSpec = Field(**default_object(QuotaSpec, "Default per-tenant rate limits; omitted: unlimited."))

    @model_validator(mode="after")
    def _tiers_agree(self) -> InferenceCascadeSpec:
        names = [tier.name for tier in self.tiers]
        # The CRD's list-map key: the API server refuses a second tier with a name already used.
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise refused(f"tier names must be unique; more than one tier is named {', '.join(duplicates)}")
        if self.escalation.default_max_tier is not None and self.escalation.default_max_tier not in names:
            raise DEFAULT_MAX_TIER_RULE.refused()
        if self.model_name is not None and self.model_name in names:
            raise MODEL_NAME_RULE.refused()
        return self


class TierStatus(ApiModel):
    """A tier as the operator resolved it."""

    name: str = Field(description="Tier name.")
    kind: str = Field(description="modelDeployment, openai, bedrock or sagemaker.")
    endpoint: str = Field(description="Where the gateway sends this tier's requests (no credentials).")
    ready: Literal["True", "False", "Unknown"] = Field(
        description="ModelDeployment tiers: its Ready condition. External tiers: Unknown (the operator does not probe)."
    )
    message: str = Field(default="", description="Why the tier is not ready, or how readiness was judged.")


class TenantUsage(ApiModel):
    """What one tenant used over the summary's window, all tiers together (`neuroscale usage` splits by tier)."""

    tenant: str = Field(description="Tenant name from the tenants file (or 'default', or a trusted header's).")
    requests: int = Field(default=0, description="Answered requests, cache hits included.")
    prompt_tokens: int = Field(default=0, description="Prompt tokens the tiers processed.")
    completion_tokens: int = Field(default=0, description="Tokens the tiers generated.")
    cache_hits: int = Field(default=0, description="Requests answered from the cache.")
    saved_tokens: int = Field(default=0, description="Tokens the cache hits did not have processed again.")
    escalations: int = Field(default=0, description="Times a request moved past a tier.")
    cost_usd: float = Field(default=0.0, description="USD: tokens × each tier's price; cache hits cost nothing.")


class UsageSummary(ApiModel):
    """Per-tenant usage read from Prometheus by the operator (needs its --prometheus-url)."""

    window: str = Field(description="How far back the figures reach, e.g. 1d.")
    tenants: list[TenantUsage] = Field(
        default_factory=list, max_length=50, description="The costliest tenants first, at most 50.",
    )
    omitted_tenants: int = Field(default=0, description="Tenants beyond the 50 listed.")


class InferenceCascadeStatus(ApiModel):
    """Observed state of an InferenceCascade."""

    model_config = ApiModel.model_config | {"frozen": False}

    observed_generation: int | None = Field(default=None, description="Generation the status reflects.")
    conditions: list[Condition] = CONDITIONS_FIELD
    tiers: list[TierStatus] = Field(default_factory=list, max_length=8, description="Resolved tiers, in order.")
    endpoint: str | None = Field(default=None, description="The gateway's in-cluster OpenAI-compatible base URL.")
    model_name: str | None = Field(default=None, description="Model name clients send for the cascade.")
    replicas: int | None = Field(default=None, description="Gateway replicas.")
    ready_replicas: int | None = Field(default=None, description="Gateway replicas ready to serve.")
    config_hash: str | None = Field(default=None, description="Hash of the gateway config the pods run.")
    cache_endpoint: str | None = Field(default=None, description="Redis endpoint the gateway caches in, if any.")
    auth_mode: str | None = Field(
        default=None, description="How callers are authenticated: apiKeys, trustedHeader, or none (one tenant).",
    )
    usage: UsageSummary | None = Field(default=None, description="Per-tenant usage and cost over the last day.")


class InferenceCascade(ApiModel):
    """A gateway that serves one model name by trying ordered tiers (self-hosted, OpenAI-compatible, Bedrock,
    SageMaker), escalating on errors, refusals or low confidence, with an optional response cache."""

    api_version: Literal["neuroscale.io/v1alpha1"] = "neuroscale.io/v1alpha1"
    kind: Literal["InferenceCascade"] = "InferenceCascade"
    metadata: dict = Field(default_factory=dict)
    spec: InferenceCascadeSpec
    status: InferenceCascadeStatus | None = None
