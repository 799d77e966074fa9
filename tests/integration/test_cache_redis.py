"""Cache over a real redis-server on loopback: exact hits shared between two gateway replicas, tenant isolation,
TTL expiry, LRU entry bound with touch-on-hit, byte bound, eviction metrics, semantic lookups with MiniLM over Redis
buckets, cleanup of evicted candidates, an unreachable Redis turning into misses, and a hung Redis (paused with
SIGSTOP) opening the circuit breaker so it costs nothing until it answers again."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import pytest
import redis.asyncio as redis_asyncio

from neuroscale.cache import CacheSettings, build_cache
from neuroscale.cache.embedders import LocalEmbedder
from neuroscale.cache.redis_backend import RedisBackend
from neuroscale.cache.response_cache import KeyedResponseCache
from neuroscale.cache.semantic import SemanticMatcher
from tests.support.redis_server import start_redis
from tests.support.cache_metrics import RecordingMetrics


def make_request(question: str = "What is 2+2?", **overrides: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": question}], "temperature": 0, **overrides}


def make_response(text: str = "4") -> dict[str, Any]:
    return {"object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.from_url(redis_url)
    yield client
    await client.aclose()


async def test_replicas_share_exact_entries_but_not_across_tenants(redis_url: str) -> None:
    settings = CacheSettings(backend="redis", redis_url=redis_url)
    metrics = RecordingMetrics()
    writer, reader = build_cache(settings), build_cache(settings, metrics=metrics)
    await writer.store("chat", make_request(), "tenant-a", make_response())
    hit = await reader.lookup("chat", make_request(), "tenant-a")
    assert hit is not None and hit.kind == "exact" and hit.response == make_response()
    assert await reader.lookup("chat", make_request(), "tenant-b") is None
    assert metrics.calls == [("hit", "exact", "exact"), ("miss", "exact")]
    await writer.close()
    await reader.close()


async def test_entries_expire_with_ttl(redis_url: str, raw: redis_asyncio.Redis) -> None:
    cache = build_cache(CacheSettings(backend="redis", redis_url=redis_url, ttl_seconds=1))
    await cache.store("chat", make_request(), "t", make_response())
    (key,) = await raw.keys("neuroscale:r:*")
    assert 0 < await raw.pttl(key) <= 1000
    await asyncio.sleep(1.2)
    assert await cache.lookup("chat", make_request(), "t") is None
    await cache.close()


async def test_entry_bound_is_lru_and_counted(redis_url: str, raw: redis_asyncio.Redis) -> None:
    metrics = RecordingMetrics()
    cache = build_cache(CacheSettings(backend="redis", redis_url=redis_url, max_entries=3), metrics=metrics)
    for q in "abc":
        await cache.store("chat", make_request(q), "t", make_response(q))
    assert await cache.lookup("chat", make_request("a"), "t") is not None  # touch: "b" is now the oldest
    await cache.store("chat", make_request("d"), "t", make_response("d"))
    present = [q for q in "abcd" if await cache.lookup("chat", make_request(q), "t") is not None]
    assert present == ["a", "c", "d"]
    assert metrics.calls.count(("eviction", "exact")) == 1
    (lru,), (sizes,) = await raw.keys("neuroscale:lru:*"), await raw.keys("neuroscale:sizes:*")
    assert await raw.zcard(lru) == 3 and await raw.hlen(sizes) == 3
    await cache.close()


async def test_byte_bound_holds(redis_url: str, raw: redis_asyncio.Redis) -> None:
    cache = build_cache(CacheSettings(backend="redis", redis_url=redis_url, max_memory_mb=1, key_prefix="bytes"))
    big = "x" * 200_000
    for i in range(12):
        await cache.store("chat", make_request(f"q{i}"), "t", make_response(big))
    (total,) = await raw.keys("bytes:bytes:*")
    assert int(await raw.get(total)) <= 1024 * 1024
    assert len(await raw.keys("bytes:r:*")) == 5
    assert await cache.lookup("chat", make_request("q11"), "t") is not None
    assert await cache.lookup("chat", make_request("q0"), "t") is None
    await cache.close()


async def test_prefixes_do_not_collide(redis_url: str) -> None:
    one = build_cache(CacheSettings(backend="redis", redis_url=redis_url, key_prefix="one"))
    two = build_cache(CacheSettings(backend="redis", redis_url=redis_url, key_prefix="two"))
    await one.store("chat", make_request(), "t", make_response())
    assert await two.lookup("chat", make_request(), "t") is None
    await one.close()
    await two.close()


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    model = LocalEmbedder()
    model.load()
    return model


def make_semantic(redis_url: str, embedder: LocalEmbedder, **overrides: Any) -> KeyedResponseCache:
    settings = CacheSettings(mode="semantic", backend="redis", redis_url=redis_url, **overrides)
    matcher = SemanticMatcher.from_settings(settings, embedder=embedder)
    return KeyedResponseCache(settings, RedisBackend.from_settings(settings), matcher=matcher)


@pytest.mark.slow
async def test_semantic_over_redis(redis_url: str, embedder: LocalEmbedder, raw: redis_asyncio.Redis) -> None:
    writer, reader = make_semantic(redis_url, embedder), make_semantic(redis_url, embedder)
    await writer.store("chat", make_request("How do I delete my account?"), "t", make_response("Settings > Delete"))
    hit = await reader.lookup("chat", make_request("What are the steps to remove my account?"), "t")
    assert hit is not None and hit.kind == "semantic" and hit.response["choices"][0]["message"]["content"] == "Settings > Delete"
    assert await reader.lookup("chat", make_request("How do I restore my account?"), "t") is None
    assert await reader.lookup("chat", make_request("What are the steps to remove my account?"), "other") is None
    (bucket,) = await raw.keys("neuroscale:b:*")
    assert await raw.llen(bucket) == 1 and await raw.pttl(bucket) > 0
    await raw.delete(*(await raw.keys("neuroscale:v:*")))
    # A candidate whose vector is gone is dropped from its bucket on the next lookup.
    assert await reader.lookup("chat", make_request("What are the steps to remove my account?"), "t") is None
    assert await raw.llen(bucket) == 0
    await writer.backend.close()
    await reader.backend.close()


@pytest.mark.slow
async def test_semantic_bucket_is_bounded(redis_url: str, embedder: LocalEmbedder, raw: redis_asyncio.Redis) -> None:
    cache = make_semantic(redis_url, embedder, semantic_bucket_size=3)
    for i in range(6):
        await cache.store("chat", make_request(f"How do I delete account {i}?"), "t", make_response())
    (bucket,) = await raw.keys("neuroscale:b:*")
    assert await raw.llen(bucket) == 3
    await cache.backend.close()


async def test_unreachable_redis_is_a_miss_not_an_error() -> None:
    metrics = RecordingMetrics()
    # Port 9 (discard) on loopback has no listener here: connections are refused at once.
    cache = build_cache(CacheSettings(backend="redis", redis_url="redis://127.0.0.1:9/0"), metrics=metrics)
    await cache.store("chat", make_request(), "t", make_response())
    assert await cache.lookup("chat", make_request(), "t") is None
    assert metrics.calls == [("miss", "exact")]
    await cache.close()


async def test_password_from_the_named_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """An external Redis with AUTH: the password comes from the env var the operator mounts from a Secret."""
    server = start_redis("--requirepass", "s3cret-pass")
    try:
        settings = dict(backend="redis", redis_url=server.url, key_prefix="auth")
        monkeypatch.setenv("TEST_REDIS_PASSWORD", "s3cret-pass")
        cache = build_cache(CacheSettings(**settings, password_env="TEST_REDIS_PASSWORD"))
        await cache.store("chat", make_request(), "tenant", make_response())
        hit = await cache.lookup("chat", make_request(), "tenant")
        assert hit is not None and hit.response["choices"][0]["message"]["content"] == "4"
        await cache.close()

        anonymous = build_cache(CacheSettings(**settings))  # no password: Redis refuses, the cache misses
        assert await anonymous.lookup("chat", make_request(), "tenant") is None
        await anonymous.close()
    finally:
        server.stop()


@pytest.fixture
def hung_redis() -> Iterator[Callable[[bool], None]]:
    """A redis-server of its own (the session's shared one must never be paused) and a switch: pause(True) stops it
    with SIGSTOP, so it still accepts connections but answers nothing; pause(False) lets it go on."""
    server = start_redis()

    def pause(paused: bool) -> None:
        os.kill(server.process.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    try:
        yield server.url, pause  # type: ignore[misc]
    finally:
        pause(False)
        server.stop()


async def timed(operation: Awaitable[Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = await operation
    return result, time.perf_counter() - started


async def test_hung_redis_opens_the_breaker_then_costs_nothing_and_recovers(hung_redis) -> None:
    url, pause = hung_redis
    timeout, reset = 0.5, 1.5
    settings = CacheSettings(backend="redis", redis_url=url, redis_timeout_seconds=timeout, breaker_failures=2,
                             breaker_reset_seconds=reset)
    cache = build_cache(settings)
    backend: RedisBackend = cache.backend  # type: ignore[attr-defined]
    await cache.store("chat", make_request("stored"), "t", make_response())
    pause(True)
    # Two failures, each bounded by the timeout, open the breaker...
    for _ in range(2):
        hit, took = await timed(cache.lookup("chat", make_request("stored"), "t"))
        assert hit is None and took < timeout * 2
    assert backend.breaker.state == "open"
    # ...after which lookups and stores do not wait for Redis at all.
    for index in range(20):
        hit, took = await timed(cache.lookup("chat", make_request(f"q{index}"), "t"))
        assert hit is None and took < timeout / 5
        _, took = await timed(cache.store("chat", make_request(f"q{index}"), "t", make_response()))
        assert took < timeout / 5
    # Once the open period is over, one request tries Redis while the others still skip it.
    await asyncio.sleep(reset + 0.1)
    trial = asyncio.create_task(cache.lookup("chat", make_request("stored"), "t"))
    await asyncio.sleep(0.05)
    _, took = await timed(cache.lookup("chat", make_request("other"), "t"))
    assert took < timeout / 5
    assert await trial is None and backend.breaker.state == "open"
    # Redis answers again: after the next open period the trial succeeds and the cache serves as before.
    pause(False)
    await asyncio.sleep(reset + 0.1)
    hit = await cache.lookup("chat", make_request("stored"), "t")
    assert hit is not None and backend.breaker.state == "closed"
    await cache.store("chat", make_request("after"), "t", make_response("5"))
    assert (await cache.lookup("chat", make_request("after"), "t")) is not None
    await cache.close()


async def test_hung_redis_adds_at_most_one_timeout_to_a_gateway_request_and_then_nothing(hung_redis) -> None:
    from tests.support.gateway_harness import make_config, openai_tier, serve_gateway
    from tests.support.stub_upstream import StubUpstream

    url, pause = hung_redis
    timeout = 1.0  # the defaults: a 1 s Redis timeout, the breaker opening after 3 failures
    cache = {"mode": "exact", "backend": "redis", "redis_url": url}
    body = {"model": "cascade", "messages": [{"role": "user", "content": "hi"}], "temperature": 0}
    async with StubUpstream("large") as stub, serve_gateway(
            make_config([openai_tier("large", stub.base_url)], cache=cache)) as gateway:
        async with aiohttp.ClientSession() as http:
            async def ask() -> float:
                started = time.perf_counter()
                async with http.post(gateway.base_url + "/chat/completions", json=body) as response:
                    assert response.status == 200
                    await response.read()
                return time.perf_counter() - started

            pause(True)
            # Each lookup waits for the timeout until the breaker opens; the store runs after the answer went out,
            # so it adds nothing to the request (and its failure counts towards opening the breaker).
            assert await ask() < timeout * 1.6
            await asyncio.sleep(timeout)
            assert await ask() < timeout * 1.6
            for _ in range(10):
                assert await ask() < timeout / 4
    assert len(stub.requests) == 12
