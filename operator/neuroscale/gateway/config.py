"""Pydantic model of the gateway's config file, which the operator renders as JSON into a ConfigMap.

The operator builds a `GatewayConfig` and writes `config.model_dump_json()`; the gateway reads it back with
`load_config(path)`. Field names are snake_case and unknown keys are rejected, so a typo in a rendered file fails
at start-up with a message naming the field instead of being silently ignored.

Secrets never appear in the file: an OpenAI-compatible tier names the environment variable that holds its API key
(`api_key_env`), which the operator fills from a Secret. AWS tiers use the pod's ambient credentials (IRSA / Pod
Identity) through boto3's default chain.
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from neuroscale.routing.config import ReplicaRouting

DEFAULT_REFUSAL_PATTERNS: tuple[str, ...] = (
    r"^\s*(i'?m|i am) (sorry|afraid)\b",
    r"^\s*i (can(no|')t|cannot|won'?t|am unable to|'m unable to)\b",
    r"^\s*as an ai\b",
    r"^\s*sorry, (but )?i\b",
)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """How long the gateway waits on one tier before it counts as failed (and, if allowed, escalates)."""

    connect_seconds: float = Field(default=2.0, gt=0, description="Time to open a connection to the upstream.")
    first_token_seconds: float = Field(
        default=30.0, gt=0, description="Streaming: time until the first chunk (and any inspection window) arrives."
    )
    total_seconds: float = Field(default=300.0, gt=0, description="Upper bound on the whole upstream exchange.")


class TierPrice(_Strict):
    """USD per million tokens a tier charges; cache hits cost nothing."""

    prompt_per_million: float = Field(default=0.0, ge=0, description="USD per million prompt tokens.")
    completion_per_million: float = Field(default=0.0, ge=0, description="USD per million generated tokens.")


class _TierBase(_Strict):
    name: str = Field(
        min_length=1,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        description="Tier name: what clients pass as `model` to target it, and what the x-neuroscale-tier header says.",
    )
    max_prompt_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Skip this tier when the estimated prompt tokens exceed this (prompt-length escalation).",
    )
    timeouts: Timeouts = Field(default_factory=Timeouts)
    price: TierPrice = Field(default_factory=TierPrice, description="What this tier's tokens cost (chargeback).")


class WakeSettings(_Strict):
    """A ModelDeployment tier that may be scaled to zero: the gateway wakes it and bridges its cold start
    (gateway/warmup.py)."""

    model_deployment: str = Field(min_length=1, description="ModelDeployment name (the demand metric's label).")
    cold_start_seconds: float = Field(ge=0, description="Declared cold start, until this gateway has measured one.")
    hold_seconds: float = Field(default=10.0, ge=0, description="Longest a request waits for the tier to wake "
                                "before the next tier serves it.")
    probe_interval_seconds: float = Field(default=1.0, gt=0, le=60, description="How often readiness is probed.")


class OpenAITier(_TierBase):
    """An OpenAI-compatible endpoint: a ModelDeployment's vLLM/TGI Service or an external API."""

    kind: Literal["openai"] = "openai"
    url: str = Field(
        pattern=r"^https?://", description="Base URL including the API prefix, e.g. http://llama-8b.ns.svc:8080/v1."
    )
    model: str = Field(min_length=1, description="Model name the upstream expects in the request body.")
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the upstream's API key (mounted from a Secret).",
    )
    routing: ReplicaRouting | None = Field(
        default=None, description="Pick the replica behind the Service per request; omitted: send to `url`."
    )
    adapters: tuple[str, ...] = Field(
        default=(),
        max_length=64,
        description="LoRA adapters the upstream also serves (its ModelDeployment's spec.adapters): clients may send "
        "them as `model`, and they are passed on as `model` (gateway/adapters.py).",
    )
    wake: WakeSettings | None = Field(default=None, description="Set when the tier may be scaled to zero.")


class BedrockTier(_TierBase):
    """An Amazon Bedrock model reached through the Converse / ConverseStream API."""

    kind: Literal["bedrock"] = "bedrock"
    model_id: str = Field(min_length=1, description="Bedrock model id or inference profile ARN.")
    region: str = Field(min_length=1, description="AWS region of the Bedrock runtime endpoint.")
    endpoint_url: str | None = Field(default=None, description="Override of the runtime endpoint (VPC endpoint).")


class SageMakerTier(_TierBase):
    """An Amazon SageMaker AI real-time endpoint serving an LMI (or any OpenAI-messages) container."""

    kind: Literal["sagemaker"] = "sagemaker"
    endpoint_name: str = Field(min_length=1)
    region: str = Field(min_length=1)
    inference_component: str | None = Field(default=None, description="Inference component name, if the endpoint uses them.")
    payload: Literal["messages", "inputs"] = Field(
        default="messages",
        description="Request schema: 'messages' (OpenAI chat schema LMI accepts) or 'inputs' ({inputs, parameters}).",
    )
    endpoint_url: str | None = Field(default=None, description="Override of the runtime endpoint (VPC endpoint).")


Tier = Annotated[OpenAITier | BedrockTier | SageMakerTier, Field(discriminator="kind")]


class Limits(_Strict):
    """Bounds on what the gateway reads, so no peer can make it hold unbounded memory."""

    max_response_bytes: int = Field(
        default=32 << 20,
        ge=64 << 10,
        le=1 << 30,
        description="Largest answer read from a tier: a non-streamed body, or all the bytes of one stream. A larger "
        "answer is an upstream failure (502, or the next tier) and is never cached.",
    )
    max_event_bytes: int = Field(
        default=1 << 20,
        ge=1 << 10,
        le=64 << 20,
        description="Largest single line or event in a tier's stream (one SSE event, one JSON line).",
    )
    max_error_body_bytes: int = Field(
        default=64 << 10, ge=1 << 10, le=1 << 20, description="Most bytes of a tier's error answer read (for the log)."
    )
    client_header_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="A client must send a complete request head within this time of connecting, or of its previous "
        "answer ending on a kept-alive connection; otherwise the connection is closed. Idle kept-alive connections "
        "close after it too.",
    )
    client_body_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        le=3600,
        description="A client must send its whole request body within this time of its request head; otherwise it "
        "gets a 408 and the connection is closed.",
    )


class EscalationPolicy(_Strict):
    """When a request moves from one tier to the next. Tiers are ordered cheapest first."""

    on_upstream_error: bool = Field(default=True, description="Escalate on connection errors, timeouts, 429 and 5xx.")
    on_empty_answer: bool = Field(default=True, description="Escalate when the answer has no text and no tool calls.")
    on_refusal: bool = Field(default=True, description="Escalate when the answer matches a refusal pattern.")
    refusal_patterns: tuple[str, ...] = Field(
        default=DEFAULT_REFUSAL_PATTERNS, description="Case-insensitive regular expressions matched against the answer."
    )
    min_mean_logprob: float | None = Field(
        default=None,
        le=0,
        description="Escalate when the mean token log-probability is below this. The gateway asks non-final tiers "
        "for log-probs and strips them from the answer unless the client asked for them.",
    )
    stream_inspect_tokens: int = Field(
        default=16,
        ge=0,
        le=4096,
        description="Streaming: chunks of a non-final tier held back and judged before the stream is committed "
        "to the client. 0 streams at once (only pre-request rules and errors before the first byte escalate).",
    )
    allow_client_hint: bool = Field(
        default=True, description="Honour the client's model (tier name) and tier headers."
    )
    tier_header: str = Field(default="x-neuroscale-tier", description="Request header naming the tier to start at.")
    max_tier_header: str = Field(
        default="x-neuroscale-max-tier", description="Request header naming the highest tier this request may reach."
    )
    default_max_tier: str | None = Field(default=None, description="Highest tier any request may reach by default.")

    @field_validator("refusal_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as error:
                raise ValueError(f"refusal pattern {pattern!r} is not a valid regular expression: {error}") from None
        return patterns


class AuthConfig(_Strict):
    """Who is calling: the tenant every cache scope, quota and chargeback figure belongs to (see `auth.py`)."""

    mode: Literal["none", "api_keys", "trusted_header"] = Field(
        default="none", description="none: one tenant, 'default'; api_keys: bearer keys from keys_file; "
        "trusted_header: the tenant named by a header an authenticating proxy sets.",
    )
    keys_file: str | None = Field(default=None, description="api_keys: the tenants file (mounted from a Secret).")
    reload_seconds: float = Field(default=2.0, gt=0, le=300, description="How often keys_file is checked for changes.")
    tenant_header: str | None = Field(default=None, max_length=128, description="trusted_header: the tenant's header.")
    proxy_cidrs: tuple[str, ...] = Field(default=(), description="trusted_header: addresses the proxy calls from.")
    shared_secret_header: str | None = Field(
        default=None, max_length=128, description="trusted_header: header carrying the secret shared with the proxy."
    )
    shared_secret_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Environment variable holding that secret."
    )
    max_tenants: int = Field(
        default=100, ge=1, le=10_000,
        description="trusted_header: distinct tenants given their own metric labels; later ones are counted as 'other'.",
    )

    @model_validator(mode="after")
    def _mode_complete(self) -> AuthConfig:
        if self.mode == "api_keys" and not self.keys_file:
            raise ValueError("auth mode api_keys needs keys_file")
        if self.mode == "trusted_header":
            if not self.tenant_header:
                raise ValueError("auth mode trusted_header needs tenant_header")
            if not self.proxy_cidrs and not (self.shared_secret_header and self.shared_secret_env):
                raise ValueError("auth mode trusted_header needs proxy_cidrs or shared_secret_header and "
                                 "shared_secret_env: otherwise any client could name any tenant")
        for cidr in self.proxy_cidrs:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"proxy_cidrs: {cidr!r} is not an address range") from None
        return self


class QuotaConfig(_Strict):
    """Per-tenant rate limits shared by every replica through Redis (see `quotas.py`)."""

    redis_url: str | None = Field(
        default=None, description="Where the counters live; omitted: in this process only (each replica counts alone)."
    )
    password_env: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    key_prefix: str = Field(
        default="neuroscale", min_length=1, max_length=200,
        description="Namespaces the counters, so cascades sharing a Redis never share a tenant's counters.",
    )
    requests_per_minute: int | None = Field(
        default=None, ge=1, description="Default for tenants whose entry sets no limit; omitted: unlimited."
    )
    tokens_per_minute: int | None = Field(default=None, ge=1, description="Default prompt + generated tokens a minute.")
    timeout_seconds: float = Field(
        default=0.05, gt=0, le=5, description="Longest a quota check may take before the request goes through unchecked."
    )
    breaker_failures: int = Field(default=3, ge=1, description="Consecutive Redis failures that stop checking.")
    breaker_reset_seconds: float = Field(default=10.0, gt=0, description="How long checks stay off after that.")


class GatewayConfig(_Strict):
    """The whole gateway configuration for one InferenceCascade."""

    model_name: str = Field(
        min_length=1, description="Model name clients use for the whole cascade (usually the InferenceCascade name)."
    )
    tiers: list[Tier] = Field(min_length=1, description="Ordered cheapest first; the last tier is the fallback.")
    escalation: EscalationPolicy = Field(default_factory=EscalationPolicy)
    cache: dict[str, Any] | None = Field(
        default=None, description="neuroscale.cache.CacheSettings as a mapping; omitted means no response cache."
    )
    host: str = Field(default="0.0.0.0", description="Listen address.")
    port: int = Field(default=8080, ge=0, le=65535, description="Listen port (API, /metrics, /healthz, /readyz); 0 picks a free one.")
    auth: AuthConfig = Field(default_factory=AuthConfig, description="How callers are authenticated.")
    quotas: QuotaConfig | None = Field(default=None, description="Per-tenant rate limits; omitted: none.")
    max_body_bytes: int = Field(default=1 << 20, ge=1024, le=64 << 20, description="Largest accepted request body.")
    drain_seconds: float = Field(
        default=60.0, ge=0, le=3600,
        description="On SIGTERM: stop accepting, let requests and streams in flight finish for up to this long, exit.",
    )
    limits: Limits = Field(default_factory=Limits, description="Bounds on reads from tiers and clients.")

    @field_validator("cache")
    @classmethod
    def _cache_settings_valid(cls, cache: dict[str, Any] | None) -> dict[str, Any] | None:
        if cache is not None:
            from neuroscale.cache.settings import CacheConfigError, CacheSettings

            try:
                CacheSettings.from_mapping(cache)
            except (CacheConfigError, TypeError) as error:
                raise ValueError(f"invalid cache settings: {error}") from None
        return cache

    @model_validator(mode="after")
    def _tier_names_resolve(self) -> GatewayConfig:
        names = [tier.name for tier in self.tiers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"tier names must be unique; repeated: {', '.join(duplicates)}")
        if self.model_name in names:
            raise ValueError(f"model_name {self.model_name!r} must differ from every tier name")
        adapters = {a for tier in self.tiers if tier.kind == "openai" for a in tier.adapters}
        shadowed = sorted(adapters & {self.model_name, *names})
        if shadowed:
            raise ValueError(f"adapter names must differ from model_name and every tier name: {', '.join(shadowed)}")
        cap = self.escalation.default_max_tier
        if cap is not None and cap not in names:
            raise ValueError(f"escalation.default_max_tier {cap!r} is not a tier; tiers are {', '.join(names)}")
        return self

    def tier_index(self, name: str) -> int | None:
        """Position of the tier called `name`, or None."""
        for index, tier in enumerate(self.tiers):
            if tier.name == name:
                return index
        return None


class ConfigError(Exception):
    """The config file is missing, not JSON, or does not match GatewayConfig."""


def parse_config(text: str, source: str = "<config>") -> GatewayConfig:
    """Parse the rendered JSON (YAML also works, for hand-written files) into a GatewayConfig."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid JSON or YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return GatewayConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(f"{source}: invalid gateway config:\n{error}") from None


def load_config(path: str | Path) -> GatewayConfig:
    """Read and validate the config file at `path`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read gateway config {path}: {error.strerror or error}") from None
    return parse_config(text, str(path))
