"""The gateway over real HTTP in front of stub OpenAI-compatible engines on loopback.

Covers: serving from the cheapest tier with the tier header; escalation on upstream 5xx, timeouts (non-streaming and
first token), refusals, empty answers and low mean log-probability (log-probs requested from the lower tier and
hidden from the client), prompt-length skipping, tier and max-tier headers; 4xx from a tier passed back without
escalating; 502/504 when the last tier fails; streaming passed through chunk by chunk (first chunk long before the
last), a refusal inside the inspection window never reaching the client, failures after the stream was committed
ending in an error event; client disconnects closing the upstream stream; bad input (malformed JSON, unknown
fields, oversized bodies, unknown model, unknown route, wrong method); /v1/models, /healthz, /readyz, /metrics;
low log-probability judged inside the streaming window; a window of 0 streaming the lower tier at once."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest

from tests.support.gateway_harness import RunningGateway, make_config, openai_tier, serve_gateway
from tests.support.stub_upstream import StubUpstream

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def two_tier_config(small: StubUpstream, large: StubUpstream, small_overrides: dict | None = None, **overrides: Any):
    return make_config(
        [openai_tier("small", small.base_url, **(small_overrides or {})), openai_tier("large", large.base_url)],
        **overrides,
    )


async def post(http: aiohttp.ClientSession, gateway: RunningGateway, body: dict | bytes, *, path: str = "/chat/completions",
               headers: dict | None = None) -> tuple[int, dict[str, str], dict]:
    kwargs: dict[str, Any] = {"data": body} if isinstance(body, bytes) else {"json": {"model": "cascade", **body}}
    async with http.post(gateway.base_url + path, headers=headers, **kwargs) as response:
        return response.status, dict(response.headers), await response.json()


async def stream_events(http: aiohttp.ClientSession, gateway: RunningGateway, body: dict,
                        headers: dict | None = None) -> tuple[dict[str, str], list[Any]]:
    """Data payloads of an SSE answer, decoded; '[DONE]' kept as a string."""
    async with http.post(gateway.base_url + "/chat/completions", json={"model": "cascade", "stream": True, **body},
                         headers=headers) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        text = await response.text()
    payloads = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
    return dict(response.headers), [payload if payload == "[DONE]" else json.loads(payload) for payload in payloads]


def content_of(events: list[Any]) -> str:
    return "".join((e["choices"][0]["delta"].get("content") or "") for e in events if isinstance(e, dict) and e.get("choices"))


async def test_cheapest_tier_serves_and_says_so(small: StubUpstream, large: StubUpstream, http) -> None:
    async with serve_gateway(two_tier_config(small, large)) as gateway:
        status, headers, body = await post(http, gateway, {"messages": QUESTION})
        assert status == 200
        assert headers["x-neuroscale-tier"] == "small"
        assert "x-neuroscale-escalations" not in headers
        assert body["choices"][0]["message"]["content"] == "Paris, small says."
        assert small.requests[0]["model"] == "small-model"
        assert large.requests == []
        assert gateway.metric("neuroscale_gateway_requests_total", endpoint="chat", tier="small", status="200") == 1
        assert gateway.metric("neuroscale_gateway_tokens_total", tier="small", kind="completion", adapter="") == 3


@pytest.mark.parametrize(
    ("small_behaviour", "small_overrides", "reason"),
    [
        ({"status": 503}, {}, "upstream_error"),
        ({"status": 429}, {}, "upstream_error"),
        ({"delay_seconds": 2}, {"timeouts": {"total_seconds": 0.2}}, "timeout"),
        ({"answer": "I'm sorry, but I can't help with that."}, {}, "refusal"),
        ({"answer": ""}, {}, "empty_answer"),
    ],
)
async def test_escalates_with_reason(small, large, http, small_behaviour: dict, small_overrides: dict, reason: str) -> None:
    for key, value in small_behaviour.items():
        setattr(small.behaviour, key, value)
    async with serve_gateway(two_tier_config(small, large, small_overrides)) as gateway:
        status, headers, body = await post(http, gateway, {"messages": QUESTION})
        assert status == 200
        assert headers["x-neuroscale-tier"] == "large"
        assert headers["x-neuroscale-escalations"] == f"small:{reason}"
        assert body["choices"][0]["message"]["content"] == "Paris, large says."
        assert gateway.metric("neuroscale_gateway_escalations_total", from_tier="small", reason=reason) == 1


async def test_low_logprob_escalates_and_logprobs_stay_hidden(small, large, http) -> None:
    config = two_tier_config(small, large, escalation={"min_mean_logprob": -1.0})
    async with serve_gateway(config) as gateway:
        small.behaviour.logprob = -0.2
        status, headers, body = await post(http, gateway, {"messages": QUESTION})
        assert headers["x-neuroscale-tier"] == "small"
        assert small.requests[-1]["logprobs"] is True
        assert body["choices"][0]["logprobs"] is None
        small.behaviour.logprob = -3.0
        status, headers, body = await post(http, gateway, {"messages": QUESTION})
        assert headers["x-neuroscale-tier"] == "large"
        assert headers["x-neuroscale-escalations"] == "small:low_logprob"
        assert "logprobs" not in large.requests[-1]


async def test_client_logprobs_are_kept(small, large, http) -> None:
    async with serve_gateway(two_tier_config(small, large, escalation={"min_mean_logprob": -1.0})) as gateway:
        _, _, body = await post(http, gateway, {"messages": QUESTION, "logprobs": True})
        assert body["choices"][0]["logprobs"]["content"][0]["logprob"] == pytest.approx(-0.05)


async def test_long_prompt_skips_the_small_tier(small, large, http) -> None:
    async with serve_gateway(two_tier_config(small, large, {"max_prompt_tokens": 20})) as gateway:
        long_question = [{"role": "user", "content": "Explain " + "in detail " * 40}]
        _, headers, _ = await post(http, gateway, {"messages": long_question})
        assert headers["x-neuroscale-tier"] == "large"
        assert headers["x-neuroscale-escalations"] == "small:prompt_length"
        assert small.requests == []


async def test_hints_pick_and_cap_tiers(small, large, http) -> None:
    small.behaviour.answer = "I cannot answer that."
    async with serve_gateway(two_tier_config(small, large)) as gateway:
        _, headers, _ = await post(http, gateway, {"messages": QUESTION}, headers={"x-neuroscale-tier": "large"})
        assert headers["x-neuroscale-tier"] == "large" and small.requests == []
        _, headers, body = await post(http, gateway, {"messages": QUESTION}, headers={"x-neuroscale-max-tier": "small"})
        assert headers["x-neuroscale-tier"] == "small"
        assert body["choices"][0]["message"]["content"] == "I cannot answer that."
        _, headers, _ = await post(http, gateway, {"model": "large", "messages": QUESTION})
        assert headers["x-neuroscale-tier"] == "large"


async def test_client_error_from_a_tier_is_passed_back_without_escalating(small, large, http) -> None:
    small.behaviour.status = 400
    async with serve_gateway(two_tier_config(small, large)) as gateway:
        status, _, body = await post(http, gateway, {"messages": QUESTION})
        assert status == 400
        assert body["error"]["message"] == "small is failing with 400"
        assert large.requests == []


@pytest.mark.parametrize(("behaviour", "status", "code"), [({"status": 500}, 502, "error"), ({"delay_seconds": 2}, 504, "timeout")])
async def test_last_tier_failure_is_an_openai_error(small, large, http, behaviour: dict, status: int, code: str) -> None:
    for stub in (small, large):
        for key, value in behaviour.items():
            setattr(stub.behaviour, key, value)
    timeouts = {"timeouts": {"total_seconds": 0.3}}
    config = make_config([openai_tier("small", small.base_url, **timeouts), openai_tier("large", large.base_url, **timeouts)])
    async with serve_gateway(config) as gateway:
        got, _, body = await post(http, gateway, {"messages": QUESTION})
        assert got == status
        assert body["error"]["code"] == code and body["error"]["type"] == "upstream_error"
        assert gateway.metric("neuroscale_gateway_upstream_errors_total", tier="large", kind=code) == 1


async def test_stream_passes_chunks_through_as_they_arrive(small, large, http) -> None:
    large.behaviour.answer = " ".join(f"word{index}" for index in range(12))
    large.behaviour.chunk_delay_seconds = 0.05
    config = make_config([openai_tier("large", large.base_url)])
    async with serve_gateway(config) as gateway:
        arrivals = []
        started = time.perf_counter()
        async with http.post(gateway.base_url + "/chat/completions",
                             json={"model": "cascade", "stream": True, "messages": QUESTION}) as response:
            assert response.headers["x-neuroscale-tier"] == "large"
            async for line in response.content:
                if line.startswith(b"data: ") and b'"content":"word' in line:
                    arrivals.append(time.perf_counter() - started)
        assert len(arrivals) == 12
        assert arrivals[-1] - arrivals[0] > 0.4, "chunks were buffered instead of passed through"


async def test_streamed_refusal_in_the_window_never_reaches_the_client(small, large, http) -> None:
    small.behaviour.answer = "I'm sorry, but I can't help with that request today."
    async with serve_gateway(two_tier_config(small, large)) as gateway:
        headers, events = await stream_events(http, gateway, {"messages": QUESTION})
        assert headers["x-neuroscale-tier"] == "large"
        assert headers["x-neuroscale-escalations"] == "small:refusal"
        assert content_of(events) == "Paris, large says."
        assert events[-1] == "[DONE]"
        assert all("usage" not in event for event in events[:-1])


async def test_stream_usage_only_when_asked(small, large, http) -> None:
    async with serve_gateway(two_tier_config(small, large)) as gateway:
        _, events = await stream_events(http, gateway, {"messages": QUESTION, "stream_options": {"include_usage": True}})
        assert events[-2]["usage"]["completion_tokens"] == 3
        assert gateway.metric("neuroscale_gateway_tokens_total", tier="small", kind="completion", adapter="") == 3


async def test_stream_first_token_timeout_escalates(small, large, http) -> None:
    small.behaviour.delay_seconds = 2
    async with serve_gateway(two_tier_config(small, large, {"timeouts": {"first_token_seconds": 0.2}})) as gateway:
        headers, events = await stream_events(http, gateway, {"messages": QUESTION})
        assert headers["x-neuroscale-escalations"] == "small:timeout"
        assert content_of(events) == "Paris, large says."


@pytest.mark.parametrize("failure", [{"error_after_chunks": 2}, {"break_after_chunks": 2}])
async def test_failure_after_commit_ends_with_an_error_event(small, large, http, failure: dict) -> None:
    large.behaviour.answer = "one two three four five six"
    for key, value in failure.items():
        setattr(large.behaviour, key, value)
    async with serve_gateway(make_config([openai_tier("large", large.base_url)])) as gateway:
        _, events = await stream_events(http, gateway, {"messages": QUESTION})
        assert content_of(events[:-1]) == "one two "
        assert events[-1]["error"]["type"] == "upstream_error"
        assert "[DONE]" not in events
        # The client received status 200; how the stream ended is counted apart.
        assert gateway.metric("neuroscale_gateway_requests_total", endpoint="chat", tier="large", status="200") == 1
        assert gateway.metric("neuroscale_gateway_stream_errors_total", endpoint="chat", tier="large", kind="error") == 1


async def test_client_disconnect_mid_stream_closes_the_upstream(small, large, http) -> None:
    large.behaviour.answer = " ".join(["token"] * 200)
    large.behaviour.chunk_delay_seconds = 0.01
    async with serve_gateway(make_config([openai_tier("large", large.base_url)])) as gateway:
        response = await http.post(gateway.base_url + "/chat/completions",
                                   json={"model": "cascade", "stream": True, "messages": QUESTION})
        await response.content.readline()
        response.close()
        for _ in range(200):
            if large.disconnects and gateway.metric("neuroscale_gateway_client_disconnects_total"):
                break
            await asyncio.sleep(0.02)
        assert large.disconnects == 1
        assert gateway.metric("neuroscale_gateway_client_disconnects_total") == 1
        large.behaviour.answer = "still serving"
        status, _, body = await post(http, gateway, {"messages": QUESTION})
        assert status == 200 and body["choices"][0]["message"]["content"] == "still serving"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b'{"model": "cascade", "messages": [', 400, "invalid_json"),
        (json.dumps({"model": "cascade", "messages": QUESTION, "functions": []}).encode(), 400, "unknown_parameter"),
        (json.dumps({"model": "gpt-4", "messages": QUESTION}).encode(), 404, "model_not_found"),
        (json.dumps({"model": "cascade", "messages": [{"role": "user", "content": "x" * 5000}]}).encode(), 413,
         "request_too_large"),
    ],
)
async def test_bad_input_gets_openai_errors(small, large, http, payload: bytes, status: int, code: str) -> None:
    async with serve_gateway(two_tier_config(small, large, max_body_bytes=4096)) as gateway:
        got, _, body = await post(http, gateway, payload)
        assert got == status
        assert body["error"]["code"] == code
        assert small.requests == []


async def test_unknown_routes_and_methods_are_openai_errors(small, large, http) -> None:
    async with serve_gateway(two_tier_config(small, large)) as gateway:
        async with http.get(gateway.base_url + "/embeddings") as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "not_found"
        async with http.get(gateway.base_url + "/chat/completions") as response:
            assert response.status == 405
            assert "error" in await response.json()


async def test_models_health_readiness_and_metrics(small, large, http) -> None:
    async with serve_gateway(two_tier_config(small, large)) as gateway:
        async with http.get(gateway.base_url + "/models") as response:
            assert [model["id"] for model in (await response.json())["data"]] == ["cascade", "small", "large"]
        async with http.get(gateway.url + "/healthz") as response:
            assert response.status == 200
        async with http.get(gateway.url + "/readyz") as response:
            assert response.status == 200
        await post(http, gateway, {"messages": QUESTION})
        async with http.get(gateway.url + "/metrics") as response:
            text = await response.text()
        assert 'neuroscale_gateway_requests_total{endpoint="chat",status="200",tier="small"} 1.0' in text
        assert "neuroscale_gateway_time_to_first_token_seconds_bucket" in text
        assert "neuroscale_gateway_request_duration_seconds_count" in text


async def test_completions_endpoint_streams_and_escalates(small, large, http) -> None:
    small.behaviour.answer = "As an AI, I cannot."
    async with serve_gateway(two_tier_config(small, large)) as gateway:
        status, headers, body = await post(http, gateway, {"prompt": "Capital of France:"}, path="/completions")
        assert status == 200 and headers["x-neuroscale-tier"] == "large"
        assert body["choices"][0]["text"] == "Paris, large says."
        async with http.post(gateway.base_url + "/completions",
                             json={"model": "cascade", "prompt": "Capital:", "stream": True}) as response:
            text = await response.text()
        pieces = [json.loads(line[6:])["choices"][0]["text"] for line in text.split("\n")
                  if line.startswith("data: {")]
        assert "".join(pieces) == "Paris, large says."


async def test_streamed_low_logprob_escalates_inside_the_window(small, large, http) -> None:
    small.behaviour.logprob = -4.0
    async with serve_gateway(two_tier_config(small, large, escalation={"min_mean_logprob": -1.0})) as gateway:
        headers, events = await stream_events(http, gateway, {"messages": QUESTION})
        assert headers["x-neuroscale-escalations"] == "small:low_logprob"
        assert small.requests[-1]["logprobs"] is True
        assert content_of(events) == "Paris, large says."
        assert all(event["choices"][0].get("logprobs") is None for event in events[:-1] if event["choices"])


async def test_window_of_zero_streams_the_lower_tier_at_once(small, large, http) -> None:
    small.behaviour.answer = "I'm sorry, I can't help."
    async with serve_gateway(two_tier_config(small, large, escalation={"stream_inspect_tokens": 0})) as gateway:
        headers, events = await stream_events(http, gateway, {"messages": QUESTION})
        assert headers["x-neuroscale-tier"] == "small"
        assert content_of(events) == "I'm sorry, I can't help."
        assert large.requests == []


async def test_model_by_id(small, large, http) -> None:
    async with serve_gateway(two_tier_config(small, large)) as gateway:
        for name in ("cascade", "small", "large"):
            async with http.get(gateway.base_url + f"/models/{name}") as response:
                assert response.status == 200
                assert await response.json() == {"id": name, "object": "model", "created": 0, "owned_by": "neuroscale"}
        async with http.get(gateway.base_url + "/models/gpt-4") as response:
            assert response.status == 404
            assert (await response.json())["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("stream", [False, True])
async def test_answers_name_the_model_the_client_asked_for(small, large, http, stream: bool) -> None:
    config = two_tier_config(small, large, cache={"mode": "exact"})
    async with serve_gateway(config) as gateway:
        for model in ("cascade", "large", "cascade"):  # the second "cascade" is a cache hit
            body = {"model": model, "messages": QUESTION, "temperature": 0, "stream": stream}
            async with http.post(gateway.base_url + "/chat/completions", json=body) as response:
                text = await response.text()
            answers = ([json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: {")] if stream
                       else [json.loads(text)])
            assert answers and {answer["model"] for answer in answers} == {model}
        assert {request["model"] for request in small.requests + large.requests} <= {"small-model", "large-model"}


async def test_readiness_stays_up_with_every_tier_down_and_reports_them(http) -> None:
    config = make_config([openai_tier("small", "http://127.0.0.1:9/v1"), openai_tier("large", "http://127.0.0.1:9/v1")])
    async with serve_gateway(config) as gateway:
        async with http.get(gateway.url + "/readyz") as response:
            assert response.status == 200
            assert (await response.json())["tiers"] == {
                "small": {"state": "unknown", "consecutive_failures": 0},
                "large": {"state": "unknown", "consecutive_failures": 0},
            }
        status, _, _ = await post(http, gateway, {"messages": QUESTION})
        assert status == 502
        async with http.get(gateway.url + "/readyz") as response:
            assert response.status == 200
            body = await response.json()
        assert body["status"] == "ready"
        assert {name: (tier["state"], tier["consecutive_failures"], tier["last_failure"])
                for name, tier in body["tiers"].items()} == {"small": ("failing", 1, "error"), "large": ("failing", 1, "error")}
