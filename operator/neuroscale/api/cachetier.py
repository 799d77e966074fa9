"""CacheTier: a response cache (exact or semantic) in Redis, run by the operator or bound to an existing endpoint."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from neuroscale.api.common import (
    CONDITIONS_FIELD, REDIS_URL, Condition, HttpUrl, RedisUrl, SecretKeyRef, default_object,
)
from neuroscale.api.inferencecascade import AWS_REGION
from neuroscale.api.modeldeployment import QUANTITY
from neuroscale.api.schema import ApiModel, Rule, crd_rules

__all__ = ["REDIS_URL"]  # the shared pattern (neuroscale.api.common), still importable from here

DEFAULT_SIMILARITY_THRESHOLD = 0.86  # the cache's measured default (neuroscale.cache.settings)
ONE_BACKEND_RULE = Rule("has(self.inCluster) != has(self.external)", "set exactly one of inCluster or external")
OPENAI_EMBEDDING_RULE = Rule("self.kind != 'openai' || has(self.url)", "embedding kind openai needs url")
BEDROCK_EMBEDDING_RULE = Rule("self.kind != 'bedrock' || (has(self.model) && has(self.region))",
                              "embedding kind bedrock needs model (a Titan model id) and region")
SEMANTIC_ONLY_RULE = Rule("self.mode == 'semantic' || !has(self.semantic)",
                          "semantic settings apply only to mode semantic")


class InClusterRedis(ApiModel):
    """A Redis the operator runs: one replica, no persistence (it is a cache), LRU eviction at the size bound."""

    image: str = Field(default="redis:7", max_length=512, description="Redis image (official redis:7 by default).")
    cpu: str = Field(default="250m", pattern=QUANTITY, max_length=32, description="CPU request.")


class ExternalRedis(ApiModel):
    """An existing Redis or Amazon ElastiCache (Redis OSS / Valkey) endpoint."""

    # Credentials never travel in the URL (the shared URL pattern has no userinfo): the password comes from
    # passwordSecretRef.
    url: RedisUrl = Field(
        description="redis://host:port/db, or rediss:// for TLS (ElastiCache in-transit encryption). No credentials.",
        max_length=512,
    )
    password_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding the Redis AUTH password, mounted into gateways as env."
    )
    cluster_mode: bool = Field(
        default=False,
        description="The URL names a node of a Redis Cluster (ElastiCache cluster mode): tenant scopes spread over shards.",
    )


class CacheBackend(ApiModel):
    """Where entries live: exactly one of inCluster or external."""

    model_config = crd_rules(ONE_BACKEND_RULE)

    in_cluster: InClusterRedis | None = Field(default=None, description="Run Redis in the cluster.")
    external: ExternalRedis | None = Field(default=None, description="Use an existing Redis / ElastiCache endpoint.")

    @model_validator(mode="after")
    def _exactly_one(self) -> CacheBackend:
        # The CRD's CEL rule says the same; this catches it where no API server ran (plan, tests).
        if (self.in_cluster is None) == (self.external is None):
            raise ONE_BACKEND_RULE.refused()
        return self


class EmbeddingSpec(ApiModel):
    """The model that embeds prompts for semantic matching."""

    model_config = crd_rules(OPENAI_EMBEDDING_RULE, BEDROCK_EMBEDDING_RULE)

    kind: Literal["local", "openai", "bedrock"] = Field(
        default="local", description="local (MiniLM in the gateway), openai (/v1/embeddings) or bedrock (Titan)."
    )
    model: str | None = Field(default=None, max_length=256, description="Model name or id; local default all-MiniLM-L6-v2.")
    url: HttpUrl | None = Field(default=None, max_length=2048,
                                description="Embeddings base URL (openai). No credentials: see apiKeySecretRef.")
    api_key_secret_ref: SecretKeyRef | None = Field(default=None, description="Secret key with the embeddings API key.")
    region: str | None = Field(default=None, max_length=32, pattern=AWS_REGION, description="AWS region (bedrock).")

    @model_validator(mode="after")
    def _kind_needs(self) -> EmbeddingSpec:
        if self.kind == "openai" and self.url is None:
            raise OPENAI_EMBEDDING_RULE.refused()
        if self.kind == "bedrock" and (self.model is None or self.region is None):
            raise BEDROCK_EMBEDDING_RULE.refused()
        return self


class SemanticSpec(ApiModel):
    """Semantic matching: a paraphrase of a cached prompt is answered from the cache."""

    similarity_threshold: float = Field(
        default=DEFAULT_SIMILARITY_THRESHOLD, gt=0, le=1,
        description="Cosine similarity at or above which a cached answer is reused (a verifier then checks it).",
    )
    embedding: EmbeddingSpec = Field(**default_object(EmbeddingSpec, "Embedding model."))
    index: Literal["auto", "hnsw", "flat", "scan"] = Field(
        default="auto",
        description="Where candidates come from: auto (an HNSW vector index when Redis has vector search, else the "
                    "newest entries per context), hnsw, flat, or scan (never index).",
    )


class CacheableSpec(ApiModel):
    """Which requests may be answered from, and stored in, the cache."""

    max_temperature: float = Field(
        default=0.0, ge=0, le=2,
        description="Cache requests with temperature at or below this (default 0: deterministic requests only).",
    )


class IsolationSpec(ApiModel):
    """Who may share cached answers. Callers with different API keys never do."""

    tenant_header: str | None = Field(
        default=None, max_length=128, pattern=r"^[A-Za-z0-9-]+$",
        description="Ignored: a header the client sets must not choose a cache scope. Tenants now come from the "
        "InferenceCascade's spec.auth; kept so existing objects stay valid.",
    )


class CacheTierSpec(ApiModel):
    """Desired state of a CacheTier."""

    model_config = crd_rules(SEMANTIC_ONLY_RULE)

    mode: Literal["exact", "semantic"] = Field(
        default="exact", description="exact (same request) or semantic (same meaning, by embedding similarity)."
    )
    backend: CacheBackend = Field(
        default_factory=lambda: CacheBackend(in_cluster=InClusterRedis()),
        description="Where entries live.", json_schema_extra={"default": {"inCluster": {}}},
    )
    ttl_seconds: int = Field(default=3600, ge=1, le=30 * 86400, description="How long an answer stays cached.")
    max_entries: int = Field(default=10_000, ge=1, le=100_000_000, description="Most cached answers per tenant scope of a cascade.")
    max_memory_mb: int = Field(
        default=256, ge=16, le=1_048_576, alias="maxMemoryMB",
        description="Size bound in MiB: Redis maxmemory (allkeys-lru) in cluster, and the byte bound per tenant scope.",
    )
    semantic: SemanticSpec | None = Field(default=None, description="Semantic matching settings (mode semantic).")
    cacheable: CacheableSpec = Field(**default_object(CacheableSpec, "Which requests are cached."))
    isolation: IsolationSpec = Field(**default_object(IsolationSpec, "Isolation scope."))

    @model_validator(mode="after")
    def _semantic_only_in_semantic_mode(self) -> CacheTierSpec:
        if self.mode != "semantic" and self.semantic is not None:
            raise SEMANTIC_ONLY_RULE.refused()
        return self


class CacheTierStatus(ApiModel):
    """Observed state of a CacheTier."""

    model_config = ApiModel.model_config | {"frozen": False}

    observed_generation: int | None = Field(default=None, description="Generation the status reflects.")
    conditions: list[Condition] = CONDITIONS_FIELD
    endpoint: str | None = Field(default=None, description="Redis URL gateways connect to (never with credentials).")
    mode: str | None = Field(default=None, description="exact or semantic.")
    backend: str | None = Field(default=None, description="inCluster or external.")


class CacheTier(ApiModel):
    """A response cache for InferenceCascades: exact or semantic, in a Redis the operator runs or an existing one."""

    api_version: Literal["neuroscale.io/v1alpha1"] = "neuroscale.io/v1alpha1"
    kind: Literal["CacheTier"] = "CacheTier"
    metadata: dict = Field(default_factory=dict)
    spec: CacheTierSpec
    status: CacheTierStatus | None = None
