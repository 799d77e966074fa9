"""In-process cache: exact hits and misses through build_cache, tenant isolation, copies not shared objects,
LRU order, TTL on a fake clock, entry and byte bounds, eviction/hit/miss metrics, and failures turning into misses."""

from __future__ import annotations

from typing import Any

from neuroscale.cache import CacheSettings, build_cache
from neuroscale.cache.backends import MemoryBackend
from neuroscale.cache.response_cache import KeyedResponseCache
from tests.support.cache_metrics import RecordingMetrics


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_request(question: str = "What is 2+2?", **overrides: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": question}], "temperature": 0, **overrides}


def make_response(text: str = "4") -> dict[str, Any]:
    return {"id": "r", "object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


def make_cache(clock: FakeClock | None = None, metrics: RecordingMetrics | None = None, **overrides: Any) -> KeyedResponseCache:
    settings = CacheSettings(**overrides)
    backend = MemoryBackend(ttl_seconds=settings.ttl_seconds, max_entries=settings.max_entries,
                            max_bytes=settings.max_memory_bytes, clock=clock or FakeClock())
    return KeyedResponseCache(settings, backend, metrics=metrics)


async def test_exact_hit_after_store_and_isolation_by_scope() -> None:
    metrics = RecordingMetrics()
    cache = build_cache(CacheSettings(), metrics=metrics)
    assert await cache.lookup("chat", make_request(), "tenant-a") is None
    await cache.store("chat", make_request(), "tenant-a", make_response())
    hit = await cache.lookup("chat", make_request(stream=True), "tenant-a")
    assert hit is not None and hit.kind == "exact" and hit.similarity is None
    assert hit.response["choices"][0]["message"]["content"] == "4"
    assert await cache.lookup("chat", make_request(), "tenant-b") is None
    # A request the endpoint cannot cache is neither a hit nor a miss.
    assert await cache.lookup("completions", make_request(), "tenant-a") is None
    assert metrics.calls == [("miss", "exact"), ("hit", "exact", "exact"), ("miss", "exact")]
    await cache.close()


async def test_hits_are_independent_copies() -> None:
    cache = make_cache()
    response = make_response()
    await cache.store("chat", make_request(), "t", response)
    response["choices"][0]["message"]["content"] = "changed after store"
    first = await cache.lookup("chat", make_request(), "t")
    assert first is not None
    first.response["id"] = "mutated by caller"
    second = await cache.lookup("chat", make_request(), "t")
    assert second is not None and second.response["id"] == "r"
    assert second.response["choices"][0]["message"]["content"] == "4"


async def test_uncacheable_requests_and_bad_answers_are_not_stored() -> None:
    cache = make_cache()
    await cache.store("chat", make_request(temperature=0.9), "t", make_response())
    await cache.store("chat", make_request(), "t", {"error": {"message": "upstream failed"}})
    await cache.store("chat", make_request(), "t", {"object": "chat.completion", "choices": [{"finish_reason": None}]})
    await cache.store("chat", make_request(), "t", {**make_response(), "extra": object()})
    assert len(cache.backend) == 0  # type: ignore[arg-type]
    assert await cache.lookup("chat", make_request(temperature=0.9), "t") is None
    assert not cache.cacheable("chat", make_request(n=3))


async def test_ttl_expires_entries() -> None:
    clock = FakeClock()
    cache = make_cache(clock, ttl_seconds=60)
    await cache.store("chat", make_request(), "t", make_response())
    clock.now += 59
    assert await cache.lookup("chat", make_request(), "t") is not None
    clock.now += 2
    assert await cache.lookup("chat", make_request(), "t") is None
    assert len(cache.backend) == 0  # type: ignore[arg-type]


async def test_lru_entry_bound_evicts_least_recently_used() -> None:
    metrics = RecordingMetrics()
    cache = make_cache(metrics=metrics, max_entries=2)
    for q in ("a", "b"):
        await cache.store("chat", make_request(q), "t", make_response(q))
    assert await cache.lookup("chat", make_request("a"), "t") is not None  # "a" is now most recent
    await cache.store("chat", make_request("c"), "t", make_response("c"))
    assert await cache.lookup("chat", make_request("b"), "t") is None
    assert await cache.lookup("chat", make_request("a"), "t") is not None
    assert await cache.lookup("chat", make_request("c"), "t") is not None
    assert metrics.calls.count(("eviction", "exact")) == 1


async def test_byte_bound_and_oversized_entries() -> None:
    backend = MemoryBackend(ttl_seconds=60, max_entries=1000, max_bytes=4096)
    for i in range(20):
        await backend.put(f"k{i}", b"x" * 500)
    assert backend.used_bytes <= 4096
    assert await backend.get("k19") == b"x" * 500 and await backend.get("k0") is None
    assert await backend.put("huge", b"x" * 5000) == 0 and await backend.get("huge") is None


async def test_expired_entries_are_not_counted_as_evictions() -> None:
    clock = FakeClock()
    backend = MemoryBackend(ttl_seconds=10, max_entries=1, clock=clock)
    await backend.put("old", b"1")
    clock.now += 11
    assert await backend.put("new", b"2") == 0
    assert await backend.put("newer", b"3") == 1


class BrokenBackend:
    async def get(self, key: str) -> bytes | None:
        raise ConnectionError("backend down")

    async def get_with_candidates(self, key: str, bucket: str) -> tuple[bytes | None, list[tuple[str, bytes]]]:
        raise ConnectionError("backend down")

    async def put(self, key: str, value: bytes, *, bucket: str | None = None, vector: bytes | None = None) -> int:
        raise ConnectionError("backend down")

    async def close(self) -> None:
        return None


async def test_backend_failures_become_misses() -> None:
    metrics = RecordingMetrics()
    cache = KeyedResponseCache(CacheSettings(), BrokenBackend(), metrics=metrics)
    await cache.store("chat", make_request(), "t", make_response())
    assert await cache.lookup("chat", make_request(), "t") is None
    assert metrics.calls == [("miss", "exact")]


async def test_default_cache_is_bounded_and_never_keeps_an_oversized_answer() -> None:
    cache = build_cache(CacheSettings())
    backend = cache.backend  # type: ignore[attr-defined]
    assert backend._max_bytes == 256 * 1024 * 1024
    await cache.store("chat", make_request("big"), "t", make_response("x" * (2 << 20)))
    assert await cache.lookup("chat", make_request("big"), "t") is None
    assert len(backend) == 0 and backend.used_bytes == 0
    small = make_cache(max_entry_bytes=4096)
    await small.store("chat", make_request("fits"), "t", make_response("x" * 1000))
    await small.store("chat", make_request("too big"), "t", make_response("x" * 5000))
    assert await small.lookup("chat", make_request("fits"), "t") is not None
    assert await small.lookup("chat", make_request("too big"), "t") is None


async def test_lone_surrogate_in_an_answer_is_cached_as_valid_json() -> None:
    cache = make_cache()
    await cache.store("chat", make_request(), "t", make_response("\ud800"))
    hit = await cache.lookup("chat", make_request(), "t")
    assert hit is not None and hit.response["choices"][0]["message"]["content"] == "\ud800"


async def test_an_answer_being_stored_is_already_a_hit() -> None:
    """The gateway stores answers after they went out; the next identical request must not miss meanwhile."""
    import asyncio

    class SlowBackend(MemoryBackend):
        def __init__(self) -> None:
            super().__init__(ttl_seconds=60, max_entries=10, max_bytes=1 << 20)
            self.release = asyncio.Event()

        async def put(self, key: str, value: bytes, **kwargs: Any) -> int:
            await self.release.wait()
            return await super().put(key, value, **kwargs)

    backend = SlowBackend()
    cache = KeyedResponseCache(CacheSettings(), backend)
    storing = asyncio.create_task(cache.store("chat", make_request(), "t", make_response("4")))
    await asyncio.sleep(0)
    hit = await cache.lookup("chat", make_request(), "t")
    assert hit is not None and hit.kind == "exact" and hit.response["choices"][0]["message"]["content"] == "4"
    assert await cache.lookup("chat", make_request(), "other-scope") is None
    backend.release.set()
    await storing
    assert len(backend) == 1 and await cache.lookup("chat", make_request(), "t") is not None
