"""Bounds on what the gateway reads and keeps: an answer larger than `limits.max_response_bytes` (whether its
Content-Length says so or it arrives chunked, streamed or not) and a stream line longer than
`limits.max_event_bytes` are upstream failures (502, or the next tier), never cached; an answer within the bounds
but larger than the cache's `max_entry_bytes` is served and not cached."""

from __future__ import annotations

import json
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


# --- slow clients: a head or a body slower than its limit is cut off; normal clients are not --------------------------

SLOW = {"client_header_timeout_seconds": 0.5, "client_body_timeout_seconds": 0.5}


async def connect(gateway: RunningGateway) -> tuple[Any, Any]:
    import asyncio

    host, port = gateway.url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def closed_within(reader: Any, seconds: float) -> bytes:
    """What the gateway sent before it closed the connection; fails if it is still open after `seconds`."""
    import asyncio

    try:
        return await asyncio.wait_for(reader.read(-1), seconds)
    except ConnectionResetError:
        return b""


async def test_head_sent_byte_by_byte_slower_than_the_limit_is_cut_off(large: StubUpstream) -> None:
    import asyncio

    payload = json.dumps({"model": "cascade", "messages": QUESTION}).encode()
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(payload))
    async with serve_gateway(make_config([openai_tier("large", large.base_url)], limits=SLOW)) as gateway:
        reader, writer = await connect(gateway)
        started = asyncio.get_running_loop().time()
        cut_off = False
        for byte in head:  # one byte every 50 ms: the head would take about 5 s
            try:
                writer.write(bytes([byte]))
                await writer.drain()
            except ConnectionError:
                cut_off = True
                break
            if reader.at_eof():
                cut_off = True
                break
            await asyncio.sleep(0.05)
            if asyncio.get_running_loop().time() - started > 3:
                break
        if not cut_off:
            assert await closed_within(reader, 1) == b""
        assert asyncio.get_running_loop().time() - started < 3, "the slow head was not cut off"
        writer.close()
        assert large.requests == []
        # A connection that never sends anything is closed too.
        reader, writer = await connect(gateway)
        assert await closed_within(reader, 2) == b""
        writer.close()


async def test_body_sent_slower_than_the_limit_gets_a_408(large: StubUpstream) -> None:
    import asyncio

    async with serve_gateway(make_config([openai_tier("large", large.base_url)], limits=SLOW)) as gateway:
        reader, writer = await connect(gateway)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{")

        async def trickle() -> None:  # one byte of body every 50 ms: the body would take 50 s
            try:
                while True:
                    await writer.drain()
                    await asyncio.sleep(0.05)
                    writer.write(b" ")
            except ConnectionError:
                pass

        trickling = asyncio.create_task(trickle())
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
            body = await reader.readexactly(length)
        finally:
            trickling.cancel()
            writer.close()
        assert head.startswith(b"HTTP/1.1 408 "), head
        assert b"connection: close" in head.lower()
        assert json.loads(body)["error"]["code"] == "request_timeout"
        assert gateway.metric("neuroscale_gateway_requests_total", endpoint="chat", tier="none", status="408") == 1
    assert large.requests == []


async def test_normal_clients_are_not_cut_off(large: StubUpstream, http) -> None:
    import asyncio

    large.behaviour.delay_seconds = 1.0  # answers take longer than the client timeouts: those bound reading only
    async with serve_gateway(make_config([openai_tier("large", large.base_url)], limits=SLOW)) as gateway:
        for _ in range(2):  # the second request reuses the kept-alive connection
            status, _, _ = await ask(http, gateway)
            assert status == 200
            await asyncio.sleep(0.2)
        large.behaviour.delay_seconds = 0
        async with http.post(gateway.base_url + "/chat/completions", data=json.dumps(
                {"model": "cascade", "messages": [{"role": "user", "content": "x" * 500_000}]}).encode()) as response:
            assert response.status == 200
