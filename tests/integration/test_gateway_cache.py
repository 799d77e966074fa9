"""The gateway with the response cache, in-process memory backend and a real Redis on loopback (exact mode):
the cache is consulted before the cascade and filled after a complete answer; a streamed answer is cached once it
ends and replays as a stream (and as JSON); scopes isolate API keys (under auth mode none) and ignore a tenant header the client sets; non-deterministic
requests bypass it; failed, partial and disconnected answers are never cached; hits and misses are counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest

from neuroscale.cache import CacheSettings, build_cache
from tests.support.gateway_harness import RunningGateway, make_config, openai_tier, serve_gateway
from tests.support.stub_upstream import StubUpstream

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
DETERMINISTIC = {"model": "cascade", "messages": QUESTION, "temperature": 0}


@pytest.fixture(params=["memory", "redis"])
def cache_settings(request: pytest.FixtureRequest) -> dict:
    if request.param == "redis":
        return {"mode": "exact", "backend": "redis", "redis_url": request.getfixturevalue("redis_url")}
    return {"mode": "exact", "backend": "memory"}


@pytest.fixture
async def engine() -> AsyncIterator[StubUpstream]:
    async with StubUpstream("large", answer="Paris is the capital of France.") as stub:
        yield stub


@pytest.fixture
async def gateway(engine: StubUpstream, cache_settings: dict) -> AsyncIterator[RunningGateway]:
    config = make_config([openai_tier("large", engine.base_url)], cache=cache_settings)
    async with serve_gateway(config) as running:
        yield running


async def ask(gateway: RunningGateway, body: dict, key: str = "key-a", tenant: str | None = None):
    headers = {"Authorization": f"Bearer {key}", **({"x-tenant": tenant} if tenant else {})}
    async with aiohttp.ClientSession() as http, http.post(gateway.base_url + "/chat/completions", json=body,
                                                          headers=headers) as response:
        return response.status, dict(response.headers), await response.text()


def streamed_text(text: str) -> str:
    events = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: {")]
    return "".join(event["choices"][0]["delta"].get("content") or "" for event in events if event["choices"])


async def test_second_identical_request_is_a_cache_hit(gateway: RunningGateway, engine: StubUpstream) -> None:
    _, first, body = await ask(gateway, DETERMINISTIC)
    assert first["x-neuroscale-cache"] == "miss" and first["x-neuroscale-tier"] == "large"
    _, second, cached = await ask(gateway, DETERMINISTIC)
    assert second["x-neuroscale-tier"] == "cache" and second["x-neuroscale-cache"] == "exact"
    assert json.loads(cached) == json.loads(body)
    assert len(engine.requests) == 1
    assert gateway.metric("neuroscale_gateway_cache_hits_total", mode="exact", kind="exact") == 1
    assert gateway.metric("neuroscale_gateway_cache_misses_total", mode="exact") == 1


async def test_streamed_answer_is_cached_and_replayed_as_a_stream(gateway: RunningGateway, engine: StubUpstream) -> None:
    _, first, text = await ask(gateway, {**DETERMINISTIC, "stream": True})
    assert first["x-neuroscale-tier"] == "large"
    _, second, replay = await ask(gateway, {**DETERMINISTIC, "stream": True})
    assert second["x-neuroscale-tier"] == "cache"
    assert second["Content-Type"].startswith("text/event-stream")
    assert streamed_text(replay) == streamed_text(text) == "Paris is the capital of France."
    assert replay.rstrip().endswith("data: [DONE]")
    _, third, as_json = await ask(gateway, DETERMINISTIC)
    assert third["x-neuroscale-tier"] == "cache"
    assert json.loads(as_json)["choices"][0]["message"]["content"] == "Paris is the capital of France."
    assert len(engine.requests) == 1


async def test_openai_client_stream_replays_from_cache(gateway: RunningGateway, engine: StubUpstream) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key="key-a", max_retries=0) as client:
        await client.chat.completions.create(**DETERMINISTIC)
        stream = await client.chat.completions.create(**DETERMINISTIC, stream=True)
        text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    assert text == "Paris is the capital of France."
    assert len(engine.requests) == 1


async def test_scopes_isolate_keys_not_client_tenant_headers(gateway: RunningGateway, engine: StubUpstream) -> None:
    await ask(gateway, DETERMINISTIC, key="key-a")
    _, other_key, _ = await ask(gateway, DETERMINISTIC, key="key-b")
    # A tenant header is the client's own claim: it neither splits nor picks a scope (auth.py decides tenants).
    _, claimed_tenant, _ = await ask(gateway, DETERMINISTIC, key="key-a", tenant="t2")
    _, same, _ = await ask(gateway, DETERMINISTIC, key="key-a")
    assert (other_key["x-neuroscale-tier"], claimed_tenant["x-neuroscale-tier"], same["x-neuroscale-tier"]) == (
        "large", "cache", "cache")


async def test_sampled_requests_bypass_the_cache(gateway: RunningGateway, engine: StubUpstream) -> None:
    for _ in range(2):
        _, headers, _ = await ask(gateway, {**DETERMINISTIC, "temperature": 0.8})
        assert headers["x-neuroscale-cache"] == "off"
    assert len(engine.requests) == 2


async def test_failed_and_partial_answers_are_not_cached(gateway: RunningGateway, engine: StubUpstream) -> None:
    engine.behaviour.status = 500
    status, _, _ = await ask(gateway, DETERMINISTIC)
    assert status == 502
    engine.behaviour.status = 200
    engine.behaviour.error_after_chunks = 2
    _, _, partial = await ask(gateway, {**DETERMINISTIC, "stream": True})
    assert '"error"' in partial
    engine.behaviour.error_after_chunks = None
    engine.behaviour.finish_reason = "error"
    await ask(gateway, DETERMINISTIC)
    engine.behaviour.finish_reason = "stop"
    _, headers, _ = await ask(gateway, DETERMINISTIC)
    assert headers["x-neuroscale-tier"] == "large"
    assert len(engine.requests) == 4


async def test_disconnected_stream_is_not_cached(gateway: RunningGateway, engine: StubUpstream) -> None:
    engine.behaviour.answer = " ".join(["word"] * 100)
    engine.behaviour.chunk_delay_seconds = 0.01
    async with aiohttp.ClientSession() as http:
        response = await http.post(gateway.base_url + "/chat/completions", json={**DETERMINISTIC, "stream": True},
                                   headers={"Authorization": "Bearer key-a"})
        await response.content.readline()
        response.close()
    for _ in range(200):
        if gateway.metric("neuroscale_gateway_client_disconnects_total"):
            break
        await asyncio.sleep(0.02)
    engine.behaviour.chunk_delay_seconds = 0
    _, headers, _ = await ask(gateway, DETERMINISTIC)
    assert headers["x-neuroscale-tier"] == "large"


async def test_injected_cache_instance_is_used(engine: StubUpstream) -> None:
    cache = build_cache(CacheSettings.from_mapping({"mode": "exact"}))
    async with serve_gateway(make_config([openai_tier("large", engine.base_url)]), cache=cache) as gateway:
        await ask(gateway, DETERMINISTIC)
        _, headers, _ = await ask(gateway, DETERMINISTIC)
    assert headers["x-neuroscale-tier"] == "cache"
