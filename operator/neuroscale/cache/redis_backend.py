"""Shared cache storage in Redis (redis.asyncio): TTL per entry, entry-count and byte bounds kept by Lua scripts.

Layout: every key of one tenant scope carries the hash tag `{<scope tag>}` (keys.scope_tag), so the scripts touch a
single slot and a Redis Cluster (ElastiCache cluster mode) spreads the scopes over its shards:
  <p>:r:{s}:<key>     response bytes, PX ttl
  <p>:v:{s}:<key>     a semantic entry, same lifetime as its response: the packed embedding + question (bucket
                      scan), or a hash {vec, ctx, q} that the vector index covers (vector_index.py)
  <p>:b:{s}:<context> list of the newest `bucket_size` semantic keys sharing a scope and context (scan only)
  <p>:lru:{s}         sorted set of response keys scored by last access — the LRU order for eviction; the score is
                      ms * 1024 + a wrapping sequence number (<p>:seq:{s}), so accesses within one ms keep their order
  <p>:sizes:{s}       hash of response key -> accounted bytes;  <p>:bytes:{s}  their sum
The entry and byte bounds hold per tenant scope (a bound across slots could not be kept atomically); Redis' own
maxmemory bounds the total. Sizes are counted as value + vector + key bytes plus a fixed overhead, not Redis' internal
allocation; an entry Redis has already expired stays counted until it reaches the LRU head or its last access is
older than the TTL, so the byte bound errs on evicting early.
Migration: entries written under the earlier layout (`{<p>}:r:...`, one slot for the whole cache) are never read
again, so an upgraded gateway starts cold; they expire with their TTL, and their bookkeeping keys (`{<p>}:idx`,
`{<p>}:sizes`, `{<p>}:bytes`, `{<p>}:seq`) go with Redis' LRU eviction or `redis-cli --scan --pattern '{<p>}:*'`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable
import struct
from typing import Any, TypeVar

import redis.asyncio as redis_asyncio
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from circuitbreaker import STATE_HALF_OPEN, STATE_OPEN, CircuitBreaker

from neuroscale.cache.backends import CacheUnavailable, Neighbour
from neuroscale.cache.settings import CacheSettings
from neuroscale.cache.vector_index import VectorIndex, has_vector_search

log = logging.getLogger(__name__)
# semantic.pack_entry's header (the dimension); repeated here so this module needs no numpy.
_HEADER = struct.Struct("<I")
_T = TypeVar("_T")
# What says Redis is unreachable or hung (as opposed to answering with an error): only these trip the breaker.
_OUTAGES = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError, asyncio.TimeoutError)


class RedisBreaker:
    """The circuit breaker in front of Redis (the `circuitbreaker` package), plus one rule it lacks: once the open
    period is over, a single request tries Redis (half-open) while the others keep skipping it, so a Redis that is
    still hung delays one request per period, not every request that arrives during the trial."""

    def __init__(self, failures: int, reset_seconds: float) -> None:
        self._breaker = CircuitBreaker(
            failure_threshold=failures, recovery_timeout=reset_seconds, expected_exception=_OUTAGES, name="redis-cache"
        )
        self._trial_running = False

    @property
    def state(self) -> str:
        return str(self._breaker.state)

    async def call(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        state = self._breaker.state
        if state == STATE_OPEN or (state == STATE_HALF_OPEN and self._trial_running):
            raise CacheUnavailable("the Redis cache is unavailable (circuit open)")
        trial = state == STATE_HALF_OPEN
        self._trial_running = self._trial_running or trial
        try:
            return await self._breaker.call_async(operation)
        finally:
            if trial:
                self._trial_running = False
            self._report(state)

    def _report(self, before: str) -> None:
        after = self._breaker.state
        if after == STATE_OPEN and before != STATE_OPEN:
            log.warning("Redis cache unreachable after %d failures (last: %r); serving uncached, next try in %s s",
                        self._breaker.failure_count, self._breaker.last_failure, self._breaker._recovery_timeout)
        elif before == STATE_HALF_OPEN and after != STATE_OPEN:
            log.warning("Redis cache reachable again")

ENTRY_OVERHEAD_BYTES = 256

_SCORE = """
local function score(now_ms)
  return now_ms * 1024 + redis.call('INCR', KEYS[#KEYS]) % 1024
end
"""

_GET = _SCORE + """
local v = redis.call('GET', KEYS[1])
if v then redis.call('ZADD', KEYS[2], 'XX', score(tonumber(ARGV[1])), KEYS[1]) end
return v
"""

_GET_WITH_CANDIDATES = _SCORE + """
local v = redis.call('GET', KEYS[1])
if v then
  redis.call('ZADD', KEYS[2], 'XX', score(tonumber(ARGV[1])), KEYS[1])
  return {1, v}
end
local ids = redis.call('LRANGE', KEYS[3], 0, -1)
local out = {0}
if #ids == 0 then return out end
local vkeys = {}
for i, id in ipairs(ids) do vkeys[i] = ARGV[2] .. id end
local vecs = redis.call('MGET', unpack(vkeys))
for i, id in ipairs(ids) do
  if vecs[i] then
    table.insert(out, id)
    table.insert(out, vecs[i])
  else
    redis.call('LREM', KEYS[3], 0, id)
  end
end
return out
"""

_PUT = _SCORE + """
local idx, sizes, total = KEYS[2], KEYS[3], KEYS[4]
local now, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local value, vector, id = ARGV[3], ARGV[4], ARGV[5]
local max_entries, max_bytes, bucket_size = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local rprefix, vprefix, overhead = ARGV[9], ARGV[10], tonumber(ARGV[11])
local context, question = ARGV[12], ARGV[13]
local function drop(rkey)
  local size = redis.call('HGET', sizes, rkey)
  if size then
    redis.call('DECRBY', total, size)
    redis.call('HDEL', sizes, rkey)
  end
  redis.call('ZREM', idx, rkey)
  redis.call('DEL', vprefix .. string.sub(rkey, #rprefix + 1))
  return redis.call('DEL', rkey)
end
for _, stale in ipairs(redis.call('ZRANGEBYSCORE', idx, '-inf', (now - ttl) * 1024, 'LIMIT', 0, 128)) do drop(stale) end
drop(KEYS[1])
local size = #value + #vector + #KEYS[1] + overhead
if max_bytes > 0 and size > max_bytes then return 0 end
redis.call('SET', KEYS[1], value, 'PX', ttl)
if #vector > 0 and #context > 0 then
  -- indexed: a hash the vector index covers
  redis.call('HSET', vprefix .. id, 'vec', vector, 'ctx', context, 'q', question)
  redis.call('PEXPIRE', vprefix .. id, ttl)
elseif #vector > 0 then
  redis.call('SET', vprefix .. id, vector, 'PX', ttl)
  redis.call('LREM', KEYS[5], 0, id)
  redis.call('LPUSH', KEYS[5], id)
  redis.call('LTRIM', KEYS[5], 0, bucket_size - 1)
  redis.call('PEXPIRE', KEYS[5], ttl)
end
redis.call('ZADD', idx, score(now), KEYS[1])
redis.call('HSET', sizes, KEYS[1], size)
redis.call('INCRBY', total, size)
local evicted = 0
while redis.call('ZCARD', idx) > max_entries or (max_bytes > 0 and tonumber(redis.call('GET', total) or '0') > max_bytes) do
  local oldest = redis.call('ZRANGE', idx, 0, 0)[1]
  if not oldest then break end
  evicted = evicted + drop(oldest)
end
return evicted
"""


class RedisBackend:
    """Implements the Backend protocol over one Redis database or Redis Cluster; several gateway replicas may share it.

    `index` is "auto", "hnsw", "flat" or "scan" (CacheSettings.semantic_index); whether the server has vector
    search is probed once, on the first semantic lookup or store.
    """

    def __init__(
        self,
        client: Any,
        *,
        key_prefix: str,
        ttl_seconds: int,
        max_entries: int,
        max_bytes: int | None = None,
        bucket_size: int = 64,
        index: str = "auto",
        cluster: bool = False,
        clock: Callable[[], float] = time.time,
        breaker: RedisBreaker | None = None,
    ) -> None:
        self._client = client
        self._breaker = breaker or RedisBreaker(failures=3, reset_seconds=10.0)
        self._prefix = key_prefix
        self._ttl_ms = int(ttl_seconds * 1000)
        self._max_entries = max_entries
        self._max_bytes = max_bytes or 0
        self._bucket_size = bucket_size
        self._clock = clock
        self._index_choice = index
        self._cluster = cluster
        self._index: VectorIndex | None = None
        self._probed = index == "scan"
        self._get = client.register_script(_GET)
        self._get_with_candidates = client.register_script(_GET_WITH_CANDIDATES)
        self._put = client.register_script(_PUT)

    @classmethod
    def from_settings(cls, settings: CacheSettings) -> RedisBackend:
        # Short timeouts: a slow cache must turn into a miss quickly, not hold the request; the breaker then stops
        # asking a Redis that keeps failing. No client-side retries: the breaker is the retry policy.
        options: dict[str, Any] = dict(
            password=os.environ.get(settings.password_env) if settings.password_env else None,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
            health_check_interval=30,
        )
        client: Any
        if settings.redis_cluster:
            client = RedisCluster.from_url(settings.redis_url or "", retry=Retry(NoBackoff(), 0), **options)
        else:
            client = redis_asyncio.from_url(settings.redis_url or "", retry=None, **options)
        return cls(
            client,
            key_prefix=settings.key_prefix,
            ttl_seconds=settings.ttl_seconds,
            max_entries=settings.max_entries,
            max_bytes=settings.max_memory_bytes,
            bucket_size=settings.semantic_bucket_size,
            index=settings.semantic_index,
            cluster=settings.redis_cluster,
            breaker=RedisBreaker(settings.breaker_failures, settings.breaker_reset_seconds),
        )

    @property
    def breaker(self) -> RedisBreaker:
        return self._breaker

    async def indexed(self) -> bool:
        if not self._probed:
            await self._breaker.call(self._probe)
        return self._index is not None

    async def _probe(self) -> None:
        # On a cluster the open-source search module indexes each shard alone (see vector_index.py): scan instead.
        available = not self._cluster and await has_vector_search(self._client)
        if available:
            algorithm = "FLAT" if self._index_choice == "flat" else "HNSW"
            self._index = VectorIndex(self._client, key_prefix=self._prefix, algorithm=algorithm)
        elif self._index_choice in ("hnsw", "flat"):
            log.warning("semantic_index %r asked for, but this Redis has %s; comparing buckets instead",
                        self._index_choice, "cluster mode" if self._cluster else "no vector search (FT._LIST)")
        self._probed = True

    async def get(self, key: str, scope: str = "") -> bytes | None:
        value: bytes | None = await self._breaker.call(
            lambda: self._get(keys=[self._rkey(key, scope), self._lru(scope), self._seq(scope)], args=[self._now_ms()])
        )
        return value

    async def get_with_candidates(self, key: str, bucket: str, scope: str = "") -> tuple[bytes | None, list[tuple[str, bytes]]]:
        reply: list[Any] = await self._breaker.call(lambda: self._get_with_candidates(
            keys=[self._rkey(key, scope), self._lru(scope), self._bkey(bucket, scope), self._seq(scope)],
            args=[self._now_ms(), self._vkey("", scope)],
        ))
        if reply[0] == 1:
            return reply[1], []
        pairs = reply[1:]
        return None, [(pairs[i].decode(), pairs[i + 1]) for i in range(0, len(pairs), 2)]

    async def nearest(self, bucket: str, vector: bytes, dim: int, scope: str = "") -> list[Neighbour]:
        index = self._index
        if index is None:
            raise RuntimeError("nearest() needs a vector index; check indexed() first")
        found = await self._breaker.call(lambda: index.nearest(bucket, vector, dim))
        # Index ids are the hash keys <p>:v:{s}:<key>; the caller wants <key>.
        return [Neighbour(n.key.rpartition("}:")[2], n.similarity, n.question) for n in found]

    async def put(self, key: str, value: bytes, *, scope: str = "", bucket: str | None = None,
                  vector: bytes | None = None) -> int:
        semantic = bucket is not None and vector is not None
        index = self._index if semantic and await self.indexed() else None
        stored, context, question = vector if semantic else b"", b"", b""
        keys = [self._rkey(key, scope), self._lru(scope), self._sizes(scope), self._bytes(scope)]
        if index is not None:
            dim, raw, text = unpack_raw(vector or b"")
            await self._breaker.call(lambda: index.ensure(dim))
            stored, context, question = raw, (bucket or "").encode(), text
        elif semantic:
            keys.append(self._bkey(bucket or "", scope))
        keys.append(self._seq(scope))
        evicted: int = await self._breaker.call(lambda: self._put(
            keys=keys,
            args=[
                self._now_ms(), self._ttl_ms, value, stored, key, self._max_entries, self._max_bytes,
                self._bucket_size, self._rkey("", scope), self._vkey("", scope), ENTRY_OVERHEAD_BYTES, context, question,
            ],
        ))
        return int(evicted)

    async def close(self) -> None:
        await self._client.aclose()

    def _tagged(self, kind: str, scope: str) -> str:
        return f"{self._prefix}:{kind}:{{{scope}}}"

    def _lru(self, scope: str) -> str:
        return self._tagged("lru", scope)

    def _seq(self, scope: str) -> str:
        return self._tagged("seq", scope)

    def _sizes(self, scope: str) -> str:
        return self._tagged("sizes", scope)

    def _bytes(self, scope: str) -> str:
        return self._tagged("bytes", scope)

    def _rkey(self, key: str, scope: str) -> str:
        return f"{self._tagged('r', scope)}:{key}"

    def _vkey(self, key: str, scope: str) -> str:
        return f"{self._tagged('v', scope)}:{key}"

    def _bkey(self, bucket: str, scope: str) -> str:
        return f"{self._tagged('b', scope)}:{bucket}"

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)


def unpack_raw(entry: bytes) -> tuple[int, bytes, bytes]:
    """Split a packed semantic entry (semantic.pack_entry) into its dimension, float32 bytes and question bytes."""
    (dim,) = _HEADER.unpack_from(entry)
    start = _HEADER.size
    return dim, entry[start:start + 4 * dim], entry[start + 4 * dim:]
