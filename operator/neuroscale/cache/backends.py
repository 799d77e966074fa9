"""Storage for cached responses: the backend protocol and the in-process LRU used by a single gateway replica."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

# Rough per-entry bookkeeping cost (dict slots, the entry object, the key string) counted against max_memory.
_ENTRY_OVERHEAD_BYTES = 256


class CacheUnavailable(Exception):
    """The backend is known to be down (its circuit breaker is open): the caller serves uncached without waiting."""


@dataclass(frozen=True)
class Neighbour:
    """A cached question found by a vector index: its entry key, cosine similarity to the query, and its text."""

    key: str
    similarity: float
    question: str


class Backend(Protocol):
    """Byte storage with TTL and size bounds; keys arrive already scoped and hashed.

    `scope` is the tenant scope's tag (keys.scope_tag): a shared store keeps one scope's keys together under it.
    A semantic entry also carries an embedding (semantic.pack_entry) and joins a bucket (one per scope and context).
    Without a vector index a bucket holds the most recent `bucket_size` entries, which are the only candidates a
    semantic lookup compares against; with one (`indexed()`), `nearest` searches all live entries of the bucket.
    """

    async def get(self, key: str, scope: str = "") -> bytes | None: ...

    async def get_with_candidates(self, key: str, bucket: str, scope: str = "") -> tuple[bytes | None, list[tuple[str, bytes]]]:
        """The value under `key`, or (on a miss) the live (key, packed entry) pairs of `bucket`, in one round trip."""
        ...

    async def put(self, key: str, value: bytes, *, scope: str = "", bucket: str | None = None,
                  vector: bytes | None = None) -> int:
        """Store and return how many other entries were evicted to stay within bounds."""
        ...

    async def indexed(self) -> bool:
        """Whether semantic candidates come from `nearest` (a vector index) rather than `get_with_candidates`."""
        ...

    async def nearest(self, bucket: str, vector: bytes, dim: int, scope: str = "") -> list[Neighbour]:
        """Entries of `bucket` nearest to `vector` (little-endian float32 of `dim`), most similar first."""
        ...

    async def close(self) -> None: ...


@dataclass
class _Entry:
    value: bytes
    expires_at: float
    size: int
    vector: bytes | None
    bucket: str | None


class MemoryBackend:
    """An LRU bounded by entry count and bytes, with a TTL checked on read; for one replica (nothing is shared)."""

    def __init__(
        self,
        *,
        ttl_seconds: float,
        max_entries: int,
        max_bytes: int | None = None,
        bucket_size: int = 64,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._bucket_size = bucket_size
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._buckets: dict[str, OrderedDict[str, None]] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def used_bytes(self) -> int:
        return self._bytes

    async def get(self, key: str, scope: str = "") -> bytes | None:
        entry = self._live(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry.value

    async def get_with_candidates(self, key: str, bucket: str, scope: str = "") -> tuple[bytes | None, list[tuple[str, bytes]]]:
        value = await self.get(key)
        if value is not None:
            return value, []
        members = self._buckets.get(bucket)
        if not members:
            return None, []
        candidates = []
        for member in list(members):
            entry = self._live(member)
            if entry is not None and entry.vector is not None:
                candidates.append((member, entry.vector))
        return None, candidates

    async def put(self, key: str, value: bytes, *, scope: str = "", bucket: str | None = None,
                  vector: bytes | None = None) -> int:
        size = len(value) + len(key) + (len(vector) if vector else 0) + _ENTRY_OVERHEAD_BYTES
        if self._max_bytes is not None and size > self._max_bytes:
            return 0
        self._remove(key)
        self._entries[key] = _Entry(value, self._clock() + self._ttl, size, vector if bucket else None, bucket)
        self._bytes += size
        if bucket is not None and vector is not None:
            members = self._buckets.setdefault(bucket, OrderedDict())
            members[key] = None
            while len(members) > self._bucket_size:
                members.popitem(last=False)
        return self._evict()

    async def indexed(self) -> bool:
        return False

    async def nearest(self, bucket: str, vector: bytes, dim: int, scope: str = "") -> list[Neighbour]:
        raise NotImplementedError("the in-process cache has no vector index; it compares its buckets")

    async def close(self) -> None:
        self._entries.clear()
        self._buckets.clear()
        self._bytes = 0

    def _live(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._remove(key)
            return None
        return entry

    def _evict(self) -> int:
        evicted = 0
        while len(self._entries) > self._max_entries or (self._max_bytes is not None and self._bytes > self._max_bytes):
            oldest_key, oldest = next(iter(self._entries.items()))
            self._remove(oldest_key)
            # Entries that had already expired are not capacity evictions.
            if oldest.expires_at > self._clock():
                evicted += 1
        return evicted

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self._bytes -= entry.size
        if entry.bucket is not None:
            members = self._buckets.get(entry.bucket)
            if members is not None:
                members.pop(key, None)
                if not members:
                    del self._buckets[entry.bucket]
