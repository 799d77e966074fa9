"""Bounds on what the gateway reads and keeps: an answer larger than `limits.max_response_bytes` (whether its
Content-Length says so or it arrives chunked, streamed or not) and a stream line longer than
`limits.max_event_bytes` are upstream failures (502, or the next tier), never cached; an answer within the bounds
but larger than the cache's `max_entry_bytes` is served and not cached."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.gateway_harness import RunningGateway, make_config, openai_tier, serve_gateway
from tests.support.stub_upstream import StubUpstream

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
LIMITS = {"max_response_bytes": 1 << 20, "max_event_bytes": 64 << 10}


def big_answer(size: int) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion", "model": "m", "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "x" * size}, "finish_reason": "stop"}]}).encode()


@pytest.fixture
async def large() -> AsyncIterator[StubUpstream]:
    async with StubUpstream("large", answer="Paris, large says.") as stub:
        yield stub


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def ask(http: aiohttp.ClientSession, gateway: RunningGateway, **body: Any) -> tuple[int, dict[str, str], str]:
    payload = {"model": "cascade", "messages": QUESTION, "temperature": 0, **body}
    async with http.post(gateway.base_url + "/chat/completions", json=payload) as response:
        return response.status, dict(response.headers), await response.text()


@pytest.mark.parametrize("piece", [None, 64 << 10], ids=["content-length", "chunked"])
async def test_answer_larger_than_the_bound_is_a_502_and_not_cached(large: StubUpstream, http, piece: int | None) -> None:
    large.behaviour.raw_body = big_answer(4 << 20)
    large.behaviour.raw_body_piece = piece
    config = make_config([openai_tier("large", large.base_url)], limits=LIMITS, cache={"mode": "exact"})
    async with serve_gateway(config) as gateway:
        status, _, text = await ask(http, gateway)
        assert status == 502 and json.loads(text)["error"]["type"] == "upstream_error"
        large.behaviour.raw_body = None
        status, headers, _ = await ask(http, gateway)
        assert (status, headers["x-neuroscale-cache"], headers["x-neuroscale-tier"]) == (200, "miss", "large")


async def test_oversized_answer_on_a_lower_tier_escalates(large: StubUpstream, http) -> None:
    async with StubUpstream("small") as small:
        small.behaviour.raw_body = big_answer(2 << 20)
        config = make_config([openai_tier("small", small.base_url), openai_tier("large", large.base_url)], limits=LIMITS)
        async with serve_gateway(config) as gateway:
            status, headers, _ = await ask(http, gateway)
    assert (status, headers["x-neuroscale-escalations"]) == (200, "small:upstream_error")


async def test_stream_line_longer_than_the_bound_is_a_502(large: StubUpstream, http) -> None:
    large.behaviour.raw_events = ['{"id": "x", "choices": [], "pad": "' + "y" * (4 << 20) + '"}']
    async with serve_gateway(make_config([openai_tier("large", large.base_url)], limits=LIMITS)) as gateway:
        status, _, text = await ask(http, gateway, stream=True)
    assert status == 502 and json.loads(text)["error"]["type"] == "upstream_error"


async def test_stream_larger_than_the_bound_ends_with_an_error_and_is_not_cached(large: StubUpstream, http) -> None:
    large.behaviour.answer = " ".join(["word"] * 40_000)  # about 4 MiB of SSE, each event small
    config = make_config([openai_tier("large", large.base_url)], limits=LIMITS, cache={"mode": "exact"})
    async with serve_gateway(config) as gateway:
        status, _, text = await ask(http, gateway, stream=True)
        assert status == 200
        assert '"type":"upstream_error"' in text.rsplit("data: ", 1)[-1]
        assert gateway.metric("neuroscale_gateway_stream_errors_total", endpoint="chat", tier="large", kind="error") == 1
        large.behaviour.answer = "short"
        _, headers, _ = await ask(http, gateway, stream=True)
        assert headers["x-neuroscale-tier"] == "large"


async def test_answer_larger_than_a_cache_entry_is_served_and_not_cached(large: StubUpstream, http) -> None:
    large.behaviour.answer = "word " * 2000  # ~10 kB
    config = make_config([openai_tier("large", large.base_url)], cache={"mode": "exact", "max_entry_bytes": 4096})
    async with serve_gateway(config) as gateway:
        for _ in range(2):
            status, headers, _ = await ask(http, gateway)
            assert (status, headers["x-neuroscale-tier"]) == (200, "large")
    assert len(large.requests) == 2
