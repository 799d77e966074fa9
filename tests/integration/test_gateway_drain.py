"""A `neuroscale gateway` process told to stop (SIGTERM, what the kubelet sends during a rollout or eviction): a
stream in flight runs to its end, new connections are refused at once, and the process exits cleanly once it is
done; a stream that would outlast `drain_seconds` is cut there, and the process still exits."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import aiohttp

from tests.support.gateway_harness import gateway_process, make_config, openai_tier
from tests.support.stub_upstream import StubUpstream

STREAM = {"model": "cascade", "stream": True, "messages": [{"role": "user", "content": "Count slowly."}]}
ANSWER = "one two three four five six seven eight nine ten"


async def read_stream(http: aiohttp.ClientSession, url: str, started: asyncio.Event) -> str:
    async with http.post(url + "/v1/chat/completions", json=STREAM) as response:
        assert response.status == 200
        body = b""
        async for piece in response.content.iter_any():
            body += piece
            if b'"one ' in body:
                started.set()
        return body.decode()


async def refuses_connections(url: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            async with aiohttp.ClientSession() as fresh, fresh.get(url + "/readyz"):
                pass
        except aiohttp.ClientConnectionError:
            return True
        await asyncio.sleep(0.05)
    return False


async def wait_exit(process: subprocess.Popen[bytes], timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while process.poll() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert process.poll() is not None, f"the gateway did not exit within {timeout} s"
    return process.returncode


async def test_sigterm_lets_a_stream_in_flight_finish(http: aiohttp.ClientSession) -> None:
    async with StubUpstream("small", answer=ANSWER, chunk_delay_seconds=0.2) as stub:
        config = make_config([openai_tier("small", stub.base_url)], drain_seconds=30)
        async with gateway_process(config) as gateway:
            started = asyncio.Event()
            stream = asyncio.create_task(read_stream(http, gateway.url, started))
            await asyncio.wait_for(started.wait(), 10)
            terminated = time.monotonic()
            gateway.process.send_signal(signal.SIGTERM)
            assert await refuses_connections(gateway.url, within=5), "new connections are refused once told to stop"
            body = await asyncio.wait_for(stream, 20)
            assert body.rstrip().endswith("data: [DONE]") and '"ten"' in body
            assert time.monotonic() - terminated >= 1.0, "the stream really was still running when SIGTERM came"
            assert await wait_exit(gateway.process, 10) == 0


async def test_a_stream_longer_than_the_drain_is_cut_and_the_gateway_exits(http: aiohttp.ClientSession) -> None:
    async with StubUpstream("small", answer=ANSWER, chunk_delay_seconds=1.0) as stub:
        config = make_config([openai_tier("small", stub.base_url)], drain_seconds=1)
        async with gateway_process(config) as gateway:
            started = asyncio.Event()
            stream = asyncio.create_task(read_stream(http, gateway.url, started))
            await asyncio.wait_for(started.wait(), 10)
            gateway.process.send_signal(signal.SIGTERM)
            assert await wait_exit(gateway.process, 10) == 0
            try:
                body = await asyncio.wait_for(stream, 5)
            except aiohttp.ClientPayloadError:
                body = ""
            assert "[DONE]" not in body
