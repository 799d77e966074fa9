"""Semantic cache over a real Redis with the search module (vector search) and over a real three-node Redis Cluster:
capability probe (index on Redis with search, bucket scan on plain Redis and on a cluster), the HNSW and FLAT indexes
created on first store and again after Redis lost them, paraphrase hits found beyond the scan's bucket bound, tenant and context isolation through
the TAG filter, expired entries leaving the index, an explicit index asked of a plain Redis falling back to the scan,
and keys of different tenant scopes spread over the cluster's slots and shards while one scope stays in one slot.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import redis.asyncio as redis_asyncio
from redis.asyncio.cluster import RedisCluster as ClusterClient

from neuroscale.cache import CacheSettings, build_cache
from neuroscale.cache.redis_backend import RedisBackend
from neuroscale.cache.response_cache import KeyedResponseCache
from neuroscale.cache.semantic import SemanticMatcher
from neuroscale.cache.verifier import same_question
from tests.support.redis_cluster import RedisCluster


def make_request(question: str, system: str = "You are a support bot.") -> dict[str, Any]:
    return {"model": "m", "temperature": 0,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}


def make_response(text: str = "4") -> dict[str, Any]:
    return {"object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


class WordEmbedder:
    """A deterministic bag-of-words embedder (hashed words, 64 dims): similar wording, similar vectors; no model."""

    async def embed(self, texts: list[str]) -> list[list[float]]:
        out = []
        for text in texts:
            vector = np.zeros(64, dtype=np.float32)
            for word in text.lower().strip("?").split():
                vector[sum(map(ord, word)) % 64] += 1.0
            out.append(vector.tolist())
        return out

    async def close(self) -> None:
        return None


def make_semantic(url: str, **overrides: Any) -> KeyedResponseCache:
    settings = CacheSettings(mode="semantic", backend="redis", redis_url=url, similarity_threshold=0.8, **overrides)
    matcher = SemanticMatcher(WordEmbedder(), threshold=settings.similarity_threshold,
                              verify=lambda a, b: same_question(a, b).same)
    return KeyedResponseCache(settings, RedisBackend.from_settings(settings), matcher=matcher)


@pytest.fixture
async def raw(redis_stack_url: str) -> AsyncIterator[redis_asyncio.Redis]:
    client = redis_asyncio.from_url(redis_stack_url)
    yield client
    await client.aclose()


@pytest.mark.parametrize("algorithm", ["hnsw", "flat"])
async def test_index_finds_a_paraphrase_beyond_the_bucket_bound(redis_stack_url: str, raw: redis_asyncio.Redis,
                                                               algorithm: str) -> None:
    cache = make_semantic(redis_stack_url, semantic_index=algorithm, semantic_bucket_size=4)
    await cache.store("chat", make_request("How do I delete my account?"), "t", make_response("Settings > Delete"))
    # Far more entries than the scan's bucket holds, all in the same context, stored after the one we want.
    for i in range(40):
        await cache.store("chat", make_request(f"How do I rename project {i} quickly?"), "t", make_response())
    assert await cache.backend.indexed()
    (name,) = await raw.execute_command("FT._LIST")
    assert name.decode() == f"neuroscale:vec:{algorithm}:64"
    info = await raw.ft(name.decode()).info()
    assert int(info["num_docs"]) == 41
    hit = await cache.lookup("chat", make_request("How can I delete my account?"), "t")
    assert hit is not None and hit.kind == "semantic" and hit.response == make_response("Settings > Delete")
    assert hit.similarity is not None and hit.similarity > 0.8
    # No list buckets: the index replaces them.
    assert await raw.keys("neuroscale:b:*") == []
    await cache.close()


async def test_index_keeps_tenants_and_contexts_apart(redis_stack_url: str) -> None:
    cache = make_semantic(redis_stack_url)
    await cache.store("chat", make_request("How do I delete my account?"), "tenant-a", make_response("a"))
    paraphrase = "How can I delete my account?"
    assert await cache.lookup("chat", make_request(paraphrase), "tenant-b") is None
    assert await cache.lookup("chat", make_request(paraphrase, system="You are a pirate."), "tenant-a") is None
    hit = await cache.lookup("chat", make_request(paraphrase), "tenant-a")
    assert hit is not None and hit.response == make_response("a")
    # The verifier still has the last word over the nearest neighbour: a changed content word misses.
    assert await cache.lookup("chat", make_request("How can I restore my account?"), "tenant-a") is None
    await cache.close()


async def test_expired_entries_leave_the_index(redis_stack_url: str, raw: redis_asyncio.Redis) -> None:
    cache = make_semantic(redis_stack_url, ttl_seconds=1)
    await cache.store("chat", make_request("How do I delete my account?"), "t", make_response())
    (name,) = await raw.execute_command("FT._LIST")
    assert int((await raw.ft(name.decode()).info())["num_docs"]) == 1
    (vkey,) = await raw.keys("neuroscale:v:*")
    assert 0 < await raw.pttl(vkey) <= 1000
    await raw.delete(vkey)  # what expiry does, without waiting for Redis' active expire cycle
    assert int((await raw.ft(name.decode()).info())["num_docs"]) == 0
    assert await cache.lookup("chat", make_request("How can I delete my account?"), "t") is None
    await cache.close()


async def test_an_index_lost_with_a_redis_restart_is_created_again(redis_stack_url: str, raw: redis_asyncio.Redis) -> None:
    cache = make_semantic(redis_stack_url)
    await cache.store("chat", make_request("How do I delete my account?"), "t", make_response("before"))
    await raw.flushall()  # what a restart of the operator's Redis (no persistence) leaves
    assert await cache.lookup("chat", make_request("How can I delete my account?"), "t") is None
    assert len(await raw.execute_command("FT._LIST")) == 1
    await cache.store("chat", make_request("How do I delete my account?"), "t", make_response("after"))
    hit = await cache.lookup("chat", make_request("How can I delete my account?"), "t")
    assert hit is not None and hit.response == make_response("after")
    await cache.close()


async def test_exact_hits_and_bounds_work_alongside_the_index(redis_stack_url: str) -> None:
    cache = make_semantic(redis_stack_url, max_entries=2)
    for q in ("How do I delete my account?", "How do I rename my project?", "How do I export my data?"):
        await cache.store("chat", make_request(q), "t", make_response(q))
    assert await cache.lookup("chat", make_request("How do I delete my account?"), "t") is None  # evicted (LRU)
    hit = await cache.lookup("chat", make_request("How do I export my data?"), "t")
    assert hit is not None and hit.kind == "exact"
    await cache.close()


async def test_plain_redis_keeps_the_bucket_scan(redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    auto, explicit = make_semantic(redis_url), make_semantic(redis_url, semantic_index="hnsw", key_prefix="other")
    for cache in (auto, explicit):
        await cache.store("chat", make_request("How do I delete my account?"), "t", make_response("x"))
        assert not await cache.backend.indexed()
        hit = await cache.lookup("chat", make_request("How can I delete my account?"), "t")
        assert hit is not None and hit.kind == "semantic"
        await cache.close()
    assert "semantic_index 'hnsw' asked for, but this Redis has no vector search" in caplog.text


async def test_scan_setting_never_indexes_on_a_redis_with_search(redis_stack_url: str, raw: redis_asyncio.Redis) -> None:
    cache = make_semantic(redis_stack_url, semantic_index="scan")
    await cache.store("chat", make_request("How do I delete my account?"), "t", make_response())
    assert not await cache.backend.indexed()
    assert await raw.execute_command("FT._LIST") == [] and len(await raw.keys("neuroscale:b:*")) == 1
    await cache.close()


async def test_tenant_scopes_spread_over_cluster_slots(redis_cluster: RedisCluster) -> None:
    settings = CacheSettings(backend="redis", redis_url=redis_cluster.url, redis_cluster=True, key_prefix="spread")
    cache = build_cache(settings)
    tenants = [f"tenant-{i}" for i in range(24)]
    for tenant in tenants:
        for q in ("a", "b"):
            await cache.store("chat", make_request(q), tenant, make_response(f"{tenant}/{q}"))
    for tenant in tenants:
        hit = await cache.lookup("chat", make_request("b"), tenant)
        assert hit is not None and hit.response == make_response(f"{tenant}/b")
    await cache.close()

    client = await ClusterClient.from_url(redis_cluster.url).initialize()
    try:
        slots_by_scope: dict[str, set[int]] = {}
        nodes_with_keys = set()
        for node in client.get_nodes():
            keys = [k.decode() async for k in client.scan_iter(match="spread:*", target_nodes=node)]
            if keys:
                nodes_with_keys.add(node.name)
            for key in keys:
                scope = key.split("{", 1)[1].split("}", 1)[0]
                slots_by_scope.setdefault(scope, set()).add(client.keyslot(key))
        assert len(slots_by_scope) == len(tenants)
        # Every scope's keys (responses, LRU index, sizes, counters) share one slot; scopes use many slots and
        # every shard holds some.
        assert all(len(slots) == 1 for slots in slots_by_scope.values())
        assert len({slot for slots in slots_by_scope.values() for slot in slots}) == len(tenants)
        assert len(nodes_with_keys) == 3
    finally:
        await client.aclose()


async def test_semantic_cache_over_a_cluster_uses_the_scan(redis_cluster: RedisCluster) -> None:
    cache = make_semantic(redis_cluster.url, redis_cluster=True, key_prefix="semcluster", semantic_bucket_size=8)
    for tenant in ("one", "two", "three"):
        await cache.store("chat", make_request("How do I delete my account?"), tenant, make_response(tenant))
    assert not await cache.backend.indexed()
    for tenant in ("one", "two", "three"):
        hit = await cache.lookup("chat", make_request("How can I delete my account?"), tenant)
        assert hit is not None and hit.kind == "semantic" and hit.response == make_response(tenant)
    assert await cache.lookup("chat", make_request("How can I delete my account?"), "four") is None
    await cache.close()
