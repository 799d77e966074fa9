"""Hostile and broken input over real HTTP: answers of the wrong shape (a 502, or the next tier, never a 500), deeply
nested JSON (400 from a client, 502 from an upstream), failures after a stream started (an SSE error event and a
clean end of the chunked body, never a second HTTP response), upstream errors that never show internals to the
client, and rate limits passed through with Retry-After."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.gateway_harness import RunningGateway, make_config, openai_tier, serve_gateway
from tests.support.stub_upstream import StubUpstream

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
CHUNK_HEAD = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": "m"}


def chunk(delta: Any, finish: str | None = None) -> str:
    return json.dumps({**CHUNK_HEAD, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


async def post(http: aiohttp.ClientSession, gateway: RunningGateway, body: dict[str, Any] | bytes,
               headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], dict[str, Any]]:
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": {"model": "cascade", **body}}
    async with http.post(gateway.base_url + "/chat/completions", headers=headers, **kwargs) as response:
        return response.status, dict(response.headers), await response.json(content_type=None)


async def raw_exchange(gateway: RunningGateway, body: dict[str, Any], timeout: float = 5.0) -> bytes:
    """Everything the gateway sends on one connection for one request (Connection: close), read until it closes: a
    second HTTP response written into a stream shows up here, and a hang fails the test instead of the client."""
    host, port = gateway.url.removeprefix("http://").split(":")
    payload = json.dumps({"model": "cascade", **body}).encode()
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                 b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(payload), payload))
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(-1), timeout)
    finally:
        writer.close()


def dechunk(raw: bytes) -> tuple[bytes, bytes, bool]:
    """(head, body, complete): the chunked body decoded; complete when the terminating zero-length chunk arrived
    and nothing followed it."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding: chunked" in head.lower(), head
    body = b""
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return head, body, rest == b"\r\n"
        body, rest = body + rest[:size], rest[size + 2:]
    return head, body, False


def sse_payloads(body: bytes) -> list[Any]:
    lines = [line[6:] for line in body.decode().split("\n") if line.startswith("data: ")]
    return [line if line == "[DONE]" else json.loads(line) for line in lines]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- wrong shapes and deep nesting (a 502 or the next tier; 400 for the client's own input) --------------------------


@pytest.mark.parametrize(
    "events",
    [
        [chunk("a string, not an object")],
        [chunk({"content": 5})],
        [json.dumps({**CHUNK_HEAD, "choices": "none"})],
        [json.dumps({**CHUNK_HEAD, "choices": [{"index": 0, "delta": {"tool_calls": "x"}}]})],
        [json.dumps([1, 2, 3])],
    ],
)
async def test_wrong_shape_first_chunk_is_a_502(large: StubUpstream, http, events: list[str]) -> None:
    large.behaviour.raw_events = events
    async with serve_gateway(make_config([openai_tier("large", large.base_url)])) as gateway:
        status, _, body = await post(http, gateway, {"messages": QUESTION, "stream": True})
        assert status == 502
        assert body["error"]["type"] == "upstream_error"
        assert gateway.metric("neuroscale_gateway_upstream_errors_total", tier="large", kind="error") == 1


async def test_wrong_shape_chunk_on_a_lower_tier_escalates(small: StubUpstream, large: StubUpstream, http) -> None:
    small.behaviour.raw_events = [chunk("a string")]
    config = make_config([openai_tier("small", small.base_url), openai_tier("large", large.base_url)])
    async with serve_gateway(config) as gateway:
        async with http.post(gateway.base_url + "/chat/completions",
                             json={"model": "cascade", "messages": QUESTION, "stream": True}) as response:
            assert response.status == 200
            assert response.headers["x-neuroscale-escalations"] == "small:upstream_error"


@pytest.mark.parametrize(
    "answer",
    [
        {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": "Paris", "finish_reason": "stop"}]},
        {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"content": {"a": 1}}}]},
        {"id": "x", "object": "chat.completion", "choices": [
            {"index": 0, "message": {"content": "Paris"}, "logprobs": {"content": [{"logprob": "low"}]}}]},
        {"id": "x", "object": "chat.completion", "choices": ["Paris"]},
    ],
)
async def test_wrong_shape_answer_is_a_502(large: StubUpstream, http, answer: dict[str, Any]) -> None:
    large.behaviour.raw_body = json.dumps(answer).encode()
    async with serve_gateway(make_config([openai_tier("large", large.base_url)],
                                         escalation={"min_mean_logprob": -1.0})) as gateway:
        status, _, body = await post(http, gateway, {"messages": QUESTION})
        assert status == 502
        assert body["error"]["type"] == "upstream_error"


@pytest.mark.parametrize("depth", [100, 100_000])
async def test_deeply_nested_request_is_a_400(large: StubUpstream, http, depth: int) -> None:
    payload = ('{"model": "cascade", "messages": [{"role": "user", "content": "hi"}], "metadata": {"x": '
               + nested(depth) + "}}").encode()
    async with serve_gateway(make_config([openai_tier("large", large.base_url)], max_body_bytes=1 << 20)) as gateway:
        status, _, body = await post(http, gateway, payload)
        assert status == 400
        assert body["error"]["code"] == "invalid_json"
        assert large.requests == []


@pytest.mark.parametrize("stream", [False, True])
async def test_deeply_nested_upstream_answer_is_a_502(large: StubUpstream, http, stream: bool) -> None:
    deep = '{"id": "x", "choices": [], "extra": ' + nested(100_000) + "}"
    large.behaviour.raw_body = deep.encode()
    large.behaviour.raw_events = [deep]
    async with serve_gateway(make_config([openai_tier("large", large.base_url)])) as gateway:
        status, _, body = await post(http, gateway, {"messages": QUESTION, "stream": stream})
        assert status == 502
        assert body["error"]["type"] == "upstream_error"


# --- failures after the stream started: one error event, a clean end, status 200 counted ----------------------------


class BreaksMidStream:
    """A tier adapter that streams two chunks and then fails in a way nobody planned for."""

    name = "large"

    def unsupported_parameter(self, endpoint: str, body: dict[str, Any]) -> str | None:
        return None

    async def complete(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("not used")

    async def stream(self, endpoint: str, body: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        for word in ("one ", "two "):
            yield json.loads(chunk({"content": word}))
        raise RuntimeError("an unexpected failure inside the gateway")

    async def close(self) -> None:
        return None


def assert_one_clean_stream(raw: bytes) -> list[Any]:
    assert raw.count(b"HTTP/1.1 ") == 1, raw[-400:]
    head, body, complete = dechunk(raw)
    assert head.startswith(b"HTTP/1.1 200 ")
    assert complete, "the chunked body did not end with its terminating chunk"
    return sse_payloads(body)


@pytest.mark.parametrize(
    ("events", "kind"),
    [
        ([chunk({"role": "assistant", "content": ""}), chunk({"content": "one "}), chunk({"content": "two "}),
          chunk("a string, not an object")], "error"),
        ([chunk({"content": "one "}), chunk({"content": "two "}), json.dumps({**CHUNK_HEAD, "choices": [{"delta": []}]})],
         "error"),
    ],
)
async def test_wrong_shape_after_the_stream_started_ends_it_cleanly(large: StubUpstream, events: list[str], kind: str) -> None:
    large.behaviour.raw_events = events
    async with serve_gateway(make_config([openai_tier("large", large.base_url)])) as gateway:
        payloads = assert_one_clean_stream(await raw_exchange(gateway, {"messages": QUESTION, "stream": True}))
        assert "".join(p["choices"][0]["delta"].get("content") or "" for p in payloads[:-1]) == "one two "
        assert payloads[-1]["error"]["type"] == "upstream_error"
        assert gateway.metric("neuroscale_gateway_requests_total", endpoint="chat", tier="large", status="200") == 1
        assert gateway.metric("neuroscale_gateway_requests_total", endpoint="chat", tier="large", status="500") == 0
        assert gateway.metric("neuroscale_gateway_stream_errors_total", endpoint="chat", tier="large", kind=kind) == 1


async def test_unexpected_exception_after_the_stream_started_ends_it_cleanly(caplog: pytest.LogCaptureFixture) -> None:
    config = make_config([openai_tier("large", "http://127.0.0.1:9/v1")])
    async with serve_gateway(config, upstreams={"large": BreaksMidStream()}) as gateway:  # type: ignore[dict-item]
        payloads = assert_one_clean_stream(await raw_exchange(gateway, {"messages": QUESTION, "stream": True}))
        assert [p["choices"][0]["delta"]["content"] for p in payloads[:-1]] == ["one ", "two "]
        assert payloads[-1]["error"] == {"message": "The gateway failed unexpectedly.", "type": "server_error",
                                         "param": None, "code": None}
        assert gateway.metric("neuroscale_gateway_requests_total", endpoint="chat", tier="large", status="200") == 1
        assert gateway.metric("neuroscale_gateway_requests_total", endpoint="chat", tier="large", status="500") == 0
        assert gateway.metric("neuroscale_gateway_stream_errors_total", endpoint="chat", tier="large", kind="gateway") == 1
    assert "an unexpected failure inside the gateway" in caplog.text


async def test_lone_surrogate_in_a_chunk_is_relayed_as_valid_json(large: StubUpstream) -> None:
    # "\ud800" is a valid JSON escape that decodes to a lone surrogate, which has no UTF-8 encoding.
    large.behaviour.raw_events = [chunk({"content": "one "}), chunk({"content": "\ud800"}), chunk({}, "stop")]
    async with serve_gateway(make_config([openai_tier("large", large.base_url)])) as gateway:
        payloads = assert_one_clean_stream(await raw_exchange(gateway, {"messages": QUESTION, "stream": True}))
        assert payloads[-1] == "[DONE]"
        assert payloads[1]["choices"][0]["delta"]["content"] == "\ud800"


# --- what clients see of upstream failures: a stable message; the details in the log ---------------------------------


@pytest.mark.parametrize(
    ("behaviour", "status", "code", "logged"),
    [
        ({"status": 500, "error_body": b"Traceback at engine-7.internal:8000 /srv/model secret=abc"}, 502, "error",
         "engine-7.internal"),
        ({"status": 503, "error_body": json.dumps({"error": {"message": "pod 10.1.2.3:8000 overloaded"}}).encode()},
         502, "error", "10.1.2.3:8000 overloaded"),
        ({"status": 401, "error_body": json.dumps({"error": {"message": "bad key sk-live-123"}}).encode()}, 502, "error",
         "HTTP 401"),
        ({"status": 404, "error_body": json.dumps({"error": {"message": "model /models/llama not found"}}).encode()},
         502, "error", "/models/llama"),
        ({"status": 400, "error_body": b"<html>nginx 10.1.2.3:8000</html>"}, 400, "rejected_by_upstream", "nginx"),
        ({"status": 200, "raw_body": b"<html>not json from 10.1.2.3:8000</html>"}, 502, "error", "JSONDecodeError"),
    ],
)
async def test_upstream_failures_show_no_internals(large: StubUpstream, http, caplog: pytest.LogCaptureFixture,
                                                   behaviour: dict[str, Any], status: int, code: str, logged: str) -> None:
    for key, value in behaviour.items():
        setattr(large.behaviour, key, value)
    async with serve_gateway(make_config([openai_tier("large", large.base_url)])) as gateway:
        got, _, body = await post(http, gateway, {"messages": QUESTION})
    assert got == status
    assert body["error"]["code"] == code
    assert body["error"]["message"] in ("Tier 'large' failed to answer.", "Tier 'large' rejected the request.")
    text = json.dumps(body)
    for secret in ("10.1.2.3", "8000", "secret", "sk-live", "/models", "127.0.0.1", str(large.port)):
        assert secret not in text
    assert logged in caplog.text


async def test_unreachable_tier_names_no_address(http) -> None:
    config = make_config([openai_tier("large", "http://127.0.0.1:9/v1", timeouts={"connect_seconds": 1})])
    async with serve_gateway(config) as gateway:
        status, _, body = await post(http, gateway, {"messages": QUESTION})
        status_stream, _, body_stream = await post(http, gateway, {"messages": QUESTION, "stream": True})
    for got, answer in ((status, body), (status_stream, body_stream)):
        assert got == 502
        assert answer["error"] == {"message": "Tier 'large' failed to answer.", "type": "upstream_error", "param": None,
                                   "code": "error"}


# --- rate limits: the next tier when there is one, else a 429 with the upstream's Retry-After ------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_rate_limited_last_tier_is_a_429_with_retry_after(large: StubUpstream, http, stream: bool) -> None:
    large.behaviour.status = 429
    large.behaviour.headers = {"Retry-After": "7"}
    async with serve_gateway(make_config([openai_tier("large", large.base_url)])) as gateway:
        status, headers, body = await post(http, gateway, {"messages": QUESTION, "stream": stream})
        assert status == 429
        assert headers["Retry-After"] == "7"
        assert body["error"] == {"message": "Tier 'large' is rate limited; retry later.", "type": "rate_limit_error",
                                 "param": None, "code": "rate_limit_exceeded"}
        assert gateway.metric("neuroscale_gateway_requests_total", endpoint="chat", tier="none", status="429") == 1


async def test_rate_limited_lower_tier_escalates_and_the_last_one_passes_its_429(small: StubUpstream, large: StubUpstream,
                                                                                http) -> None:
    small.behaviour.status = 429
    small.behaviour.headers = {"Retry-After": "30"}
    config = make_config([openai_tier("small", small.base_url), openai_tier("large", large.base_url)])
    async with serve_gateway(config) as gateway:
        status, headers, _ = await post(http, gateway, {"messages": QUESTION})
        assert (status, headers["x-neuroscale-escalations"]) == (200, "small:upstream_error")
        large.behaviour.status = 429
        large.behaviour.headers = {"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}  # in the past: retry at once
        status, headers, _ = await post(http, gateway, {"messages": QUESTION})
        assert (status, headers["Retry-After"]) == (429, "0")
        large.behaviour.headers = {"Retry-After": "soon"}  # unreadable: not passed on
        status, headers, _ = await post(http, gateway, {"messages": QUESTION})
        assert status == 429 and "Retry-After" not in headers


async def test_openai_client_sees_a_rate_limit_it_can_back_off_from(large: StubUpstream) -> None:
    import openai

    large.behaviour.status = 429
    large.behaviour.headers = {"Retry-After": "2"}
    async with serve_gateway(make_config([openai_tier("large", large.base_url)])) as gateway:
        async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key="k", max_retries=0) as client:
            with pytest.raises(openai.RateLimitError) as caught:
                await client.chat.completions.create(model="cascade", messages=QUESTION)  # type: ignore[arg-type]
    assert caught.value.response.headers["retry-after"] == "2"


# --- clients that leave ------------------------------------------------------------------------------------------------


async def test_client_dropping_mid_upload_is_no_error(large: StubUpstream, caplog: pytest.LogCaptureFixture) -> None:
    async with serve_gateway(make_config([openai_tier("large", large.base_url)])) as gateway:
        host, port = gateway.url.removeprefix("http://").split(":")
        _, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 5000\r\n\r\n{\"model\": \"cascade\", \"messages\": [")
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        for _ in range(100):
            if gateway.metric("neuroscale_gateway_requests_total", endpoint="chat", tier="none", status="499"):
                break
            await asyncio.sleep(0.02)
        assert gateway.metric("neuroscale_gateway_requests_total", endpoint="chat", tier="none", status="499") == 1
        assert gateway.metric("neuroscale_gateway_requests_total", endpoint="chat", tier="none", status="500") == 0
    assert [record for record in caplog.records if record.levelname in ("ERROR", "CRITICAL")] == []
    assert "Traceback" not in caplog.text
    assert large.requests == []
