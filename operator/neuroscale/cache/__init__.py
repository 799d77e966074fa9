"""Response caching for the gateway: exact and semantic, in process or in Redis, isolated per tenant scope.

Import stays light: numpy, sentence-transformers and the Redis client load only when a cache that needs them is built.
"""

from __future__ import annotations

from typing import Any, Protocol

from neuroscale.cache.metrics import CacheMetrics, NoMetrics
from neuroscale.cache.response_cache import CacheHit, KeyedResponseCache
from neuroscale.cache.settings import CacheConfigError, CacheSettings, EmbedderSettings

__all__ = [
    "CacheConfigError",
    "CacheHit",
    "CacheMetrics",
    "CacheSettings",
    "EmbedderSettings",
    "NoMetrics",
    "ResponseCache",
    "build_cache",
]


class ResponseCache(Protocol):
    """What the gateway calls. `endpoint` is "chat" or "completions"; `scope` is the tenant isolation key."""

    def cacheable(self, endpoint: str, request: dict[str, Any]) -> bool: ...

    async def lookup(self, endpoint: str, request: dict[str, Any], scope: str) -> CacheHit | None: ...

    async def store(self, endpoint: str, request: dict[str, Any], scope: str, response: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


def build_cache(settings: CacheSettings, metrics: CacheMetrics | None = None) -> ResponseCache:
    """Build the configured cache. Connections open lazily; a semantic cache loads its embedder on first use."""
    if settings.backend == "redis":
        from neuroscale.cache.redis_backend import RedisBackend

        backend: Any = RedisBackend.from_settings(settings)
    else:
        from neuroscale.cache.backends import MemoryBackend

        backend = MemoryBackend(
            ttl_seconds=settings.ttl_seconds,
            max_entries=settings.max_entries,
            max_bytes=settings.max_memory_bytes,
            bucket_size=settings.semantic_bucket_size,
        )
    matcher = None
    if settings.mode == "semantic":
        from neuroscale.cache.semantic import SemanticMatcher

        matcher = SemanticMatcher.from_settings(settings)
    return KeyedResponseCache(settings, backend, matcher=matcher, metrics=metrics)
