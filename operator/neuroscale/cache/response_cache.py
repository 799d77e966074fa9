"""The cache the gateway calls: exact lookups, plus semantic matching when configured, over any backend."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from neuroscale.cache.backends import Backend, CacheUnavailable
from neuroscale.cache.keys import RequestKeys, request_keys
from neuroscale.cache.metrics import CacheMetrics, NoMetrics
from neuroscale.cache.policy import is_cacheable_request, is_storable_response, servable_semantically
from neuroscale.cache.settings import CacheSettings

if TYPE_CHECKING:
    from neuroscale.cache.semantic import SemanticMatcher

log = logging.getLogger(__name__)


def _dumps(response: dict[str, Any]) -> bytes:
    try:
        return json.dumps(response, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:  # a lone surrogate has no UTF-8 form; \u escapes keep the same JSON
        return json.dumps(response, separators=(",", ":")).encode()


@dataclass(frozen=True)
class CacheHit:
    """A cached complete response; `similarity` is the cosine similarity of the matched question (semantic only)."""

    response: dict[str, Any]
    kind: Literal["exact", "semantic"]
    similarity: float | None = None


class KeyedResponseCache:
    """Implements the ResponseCache protocol. Backend or embedder failures degrade to misses, never to errors."""

    def __init__(
        self,
        settings: CacheSettings,
        backend: Backend,
        *,
        matcher: SemanticMatcher | None = None,
        metrics: CacheMetrics | None = None,
    ) -> None:
        if settings.mode == "semantic" and matcher is None:
            raise ValueError("semantic mode needs a SemanticMatcher")
        self.settings = settings
        self.backend = backend
        self._matcher = matcher if settings.mode == "semantic" else None
        self._metrics = metrics or NoMetrics()
        # Answers whose store is under way, by exact key: a lookup sees them at once (read your own writes), so a
        # store may run after the answer went out without the next identical request missing.
        self._pending: dict[str, bytes] = {}

    def cacheable(self, endpoint: str, request: dict[str, Any]) -> bool:
        return is_cacheable_request(endpoint, request, self.settings.cacheable_temperature_max)

    async def lookup(self, endpoint: str, request: dict[str, Any], scope: str) -> CacheHit | None:
        """A hit, or None. Uncacheable requests return None without counting a miss."""
        if not self.cacheable(endpoint, request) or not isinstance(scope, str):
            return None
        try:
            hit = await self._lookup(request_keys(endpoint, request, scope))
        except CacheUnavailable:
            hit = None  # the backend's breaker is open: a miss at once, logged when it opened
        except Exception:
            log.warning("cache lookup failed; serving from upstream", exc_info=True)
            hit = None
        if hit is None:
            self._metrics.miss(self.settings.mode)
        else:
            self._metrics.hit(self.settings.mode, hit.kind)
        return hit

    async def store(self, endpoint: str, request: dict[str, Any], scope: str, response: dict[str, Any]) -> None:
        if not self.cacheable(endpoint, request) or not isinstance(scope, str) or not is_storable_response(endpoint, response):
            return
        try:
            value = _dumps(response)
        except (TypeError, ValueError, RecursionError):
            log.warning("response is not JSON-serialisable; not cached")
            return
        if len(value) > self.settings.max_entry_bytes:
            log.info("answer of %d bytes is larger than max_entry_bytes (%d); not cached", len(value),
                     self.settings.max_entry_bytes)
            return
        try:
            keys = request_keys(endpoint, request, scope)
        except Exception:
            log.warning("cache key failed; answer not cached", exc_info=True)
            return
        self._pending[keys.exact] = value
        try:
            bucket = vector = None
            if self._matcher is not None and keys.context is not None and servable_semantically(response):
                try:
                    vector = await self._matcher.encode_entry(keys.question or "")
                    bucket = keys.context
                except Exception:
                    log.warning("embedding failed; answer cached for exact matches only", exc_info=True)
            evicted = await self.backend.put(keys.exact, value, scope=keys.scope_tag, bucket=bucket, vector=vector)
        except CacheUnavailable:
            return
        except Exception:
            log.warning("cache store failed; answer not cached", exc_info=True)
            return
        finally:
            if self._pending.get(keys.exact) is value:
                del self._pending[keys.exact]
        for _ in range(evicted):
            self._metrics.eviction(self.settings.mode)

    async def close(self) -> None:
        try:
            await self.backend.close()
        finally:
            if self._matcher is not None:
                await self._matcher.close()

    async def _lookup(self, keys: RequestKeys) -> CacheHit | None:
        pending = self._pending.get(keys.exact)
        if pending is not None:
            return CacheHit(json.loads(pending), "exact")
        if self._matcher is None or keys.context is None:
            value = await self.backend.get(keys.exact, keys.scope_tag)
            return None if value is None else CacheHit(json.loads(value), "exact")
        question = keys.question or ""
        if await self.backend.indexed():
            value = await self.backend.get(keys.exact, keys.scope_tag)
            if value is not None:
                return CacheHit(json.loads(value), "exact")
            query = await self._matcher.embed(question)
            nearest = await self.backend.nearest(keys.context, query.astype("<f4").tobytes(), int(query.shape[0]),
                                                 keys.scope_tag)
            matches = await self._matcher.select(question, nearest)
        else:
            value, candidates = await self.backend.get_with_candidates(keys.exact, keys.context, keys.scope_tag)
            if value is not None:
                return CacheHit(json.loads(value), "exact")
            if not candidates:
                return None
            matches = await self._matcher.matches(question, candidates)
        for match in matches:
            value = await self.backend.get(match.key, keys.scope_tag)
            if value is not None:
                return CacheHit(json.loads(value), "semantic", match.similarity)
        return None
