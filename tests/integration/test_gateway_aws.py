"""Bedrock and SageMaker tiers through real boto3 clients, behind the gateway over HTTP.

Covers: Bedrock Converse through botocore's Stubber (real parameter validation, expected request asserted) as an
escalation target and as a failing lower tier (throttling escalates, validation errors go back to the client);
ConverseStream and InvokeEndpointWithResponseStream parsed by botocore from event-stream bytes on a loopback socket
(moto implements neither; the Stubber cannot return event streams), including a stream exception inside the
inspection window (escalates) and after commit (error event); SageMaker InvokeEndpoint through moto in server mode
for both LMI payload schemas; parameters a Bedrock tier cannot honour rejected before any call."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import boto3
import pytest
from botocore.stub import Stubber

from neuroscale.gateway.config import BedrockTier
from neuroscale.gateway.upstreams.bedrock import BedrockUpstream
from tests.support.aws_eventstream import EventStreamServer, encode_event, encode_exception
from tests.support.gateway_harness import RunningGateway, make_config, openai_tier, serve_gateway
from tests.support.stub_upstream import StubUpstream

REGION = "us-east-1"
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
CHAT = {"model": "cascade", "messages": [{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Capital of France?"}], "max_tokens": 50}


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", REGION)):
        monkeypatch.setenv(name, value)


@pytest.fixture
async def aws() -> AsyncIterator[EventStreamServer]:
    async with EventStreamServer() as server:
        yield server


def bedrock_tier(**overrides: Any) -> dict[str, Any]:
    return {"kind": "bedrock", "name": "claude", "model_id": MODEL_ID, "region": REGION, **overrides}


def sagemaker_tier(url: str, **overrides: Any) -> dict[str, Any]:
    return {"kind": "sagemaker", "name": "lmi", "endpoint_name": "llama-ep", "region": REGION, "endpoint_url": url,
            **overrides}


def stubbed_bedrock() -> tuple[Any, Stubber]:
    client = boto3.client("bedrock-runtime", region_name=REGION)
    return client, Stubber(client)


def converse_response(text: str) -> dict[str, Any]:
    return {
        "output": {"message": {"role": "assistant", "content": [{"text": text}]}},
        "stopReason": "end_turn",
        "usage": {"inputTokens": 11, "outputTokens": 2, "totalTokens": 13},
        "metrics": {"latencyMs": 120},
    }


def converse_script(*texts: str) -> list[bytes]:
    return [
        encode_event("messageStart", {"role": "assistant"}),
        *(encode_event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": text}}) for text in texts),
        encode_event("contentBlockStop", {"contentBlockIndex": 0}),
        encode_event("messageStop", {"stopReason": "end_turn"}),
        encode_event("metadata", {"usage": {"inputTokens": 9, "outputTokens": 3, "totalTokens": 12},
                                  "metrics": {"latencyMs": 80}}),
    ]


async def post(gateway: RunningGateway, body: dict[str, Any]) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as http, http.post(gateway.base_url + "/chat/completions", json=body) as response:
        return response.status, dict(response.headers), await response.text()


def streamed(text: str) -> tuple[str, list[dict[str, Any]]]:
    events = [json.loads(line[6:]) for line in text.split("\n") if line.startswith("data: {")]
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
    return content, events


async def test_refusal_escalates_to_bedrock_converse(small: StubUpstream) -> None:
    small.behaviour.answer = "I'm sorry, I can't answer."
    client, stubber = stubbed_bedrock()
    expected = {"modelId": MODEL_ID, "system": [{"text": "Be brief."}],
                "messages": [{"role": "user", "content": [{"text": "Capital of France?"}]}],
                "inferenceConfig": {"maxTokens": 50}}
    stubber.add_response("converse", converse_response("Paris."), expected_params=expected)
    config = make_config([openai_tier("small", small.base_url), bedrock_tier()])
    with stubber:
        upstream = BedrockUpstream(BedrockTier(**bedrock_tier()), client=client)
        async with serve_gateway(config, upstreams={"claude": upstream}) as gateway:
            status, headers, text = await post(gateway, CHAT)
    stubber.assert_no_pending_responses()
    assert status == 200
    assert headers["x-neuroscale-tier"] == "claude"
    assert headers["x-neuroscale-escalations"] == "small:refusal"
    body = json.loads(text)
    assert body["choices"][0]["message"]["content"] == "Paris."
    assert body["usage"] == {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13}
    assert gateway.metric("neuroscale_gateway_tokens_total", tier="claude", kind="prompt", adapter="") == 11


async def test_bedrock_throttling_escalates_and_validation_goes_back(small: StubUpstream) -> None:
    client, stubber = stubbed_bedrock()
    stubber.add_client_error("converse", service_error_code="ThrottlingException", http_status_code=429)
    stubber.add_client_error("converse", service_error_code="ValidationException", service_message="bad input",
                             http_status_code=400)
    config = make_config([bedrock_tier(), openai_tier("small", small.base_url)])
    with stubber:
        upstream = BedrockUpstream(BedrockTier(**bedrock_tier()), client=client)
        async with serve_gateway(config, upstreams={"claude": upstream}) as gateway:
            _, headers, _ = await post(gateway, CHAT)
            assert headers["x-neuroscale-tier"] == "small"
            assert headers["x-neuroscale-escalations"] == "claude:upstream_error"
            status, _, text = await post(gateway, CHAT)
    assert status == 400
    assert "bad input" in json.loads(text)["error"]["message"]


async def test_bedrock_tier_rejects_what_it_cannot_translate(small: StubUpstream) -> None:
    config = make_config([openai_tier("small", small.base_url), bedrock_tier()])
    async with serve_gateway(config) as gateway:
        status, _, text = await post(gateway, {**CHAT, "tools": [{"type": "function", "function": {"name": "f"}}]})
    assert status == 400
    error = json.loads(text)["error"]
    assert (error["param"], error["code"]) == ("tools", "unsupported_parameter")
    assert small.requests == []


async def test_converse_stream_from_the_wire(aws: EventStreamServer) -> None:
    aws.script = converse_script("Par", "is", ".")
    config = make_config([bedrock_tier(endpoint_url=aws.url)])
    async with serve_gateway(config) as gateway:
        status, headers, text = await post(gateway, {**CHAT, "stream": True, "stream_options": {"include_usage": True}})
    assert status == 200 and headers["x-neuroscale-tier"] == "claude"
    content, events = streamed(text)
    assert content == "Paris."
    assert events[-1]["usage"]["total_tokens"] == 12
    assert text.rstrip().endswith("data: [DONE]")
    path, sent = aws.requests[0]
    assert path == f"/model/{MODEL_ID}/converse-stream"
    assert sent["system"] == [{"text": "Be brief."}] and sent["inferenceConfig"] == {"maxTokens": 50}


async def test_converse_stream_exception_in_window_escalates(aws: EventStreamServer, small: StubUpstream) -> None:
    aws.script = [encode_event("messageStart", {"role": "assistant"}),
                  encode_exception("modelStreamErrorException", "model crashed")]
    config = make_config([bedrock_tier(endpoint_url=aws.url), openai_tier("small", small.base_url)])
    async with serve_gateway(config) as gateway:
        _, headers, text = await post(gateway, {**CHAT, "stream": True})
    assert headers["x-neuroscale-escalations"] == "claude:upstream_error"
    assert streamed(text)[0] == "Paris, small says."


async def test_converse_stream_exception_after_commit_is_an_error_event(
    aws: EventStreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    aws.script = converse_script("one ", "two ")[:3] + [encode_exception("throttlingException", "slow down")]
    async with serve_gateway(make_config([bedrock_tier(endpoint_url=aws.url)])) as gateway:
        _, _, text = await post(gateway, {**CHAT, "stream": True})
    content, events = streamed(text)
    assert content == "one two "
    # The client learns which tier failed; what Bedrock said goes to the log only.
    assert events[-1]["error"]["message"] == "Tier 'claude' is rate limited; retry later."
    assert "slow down" in caplog.text
    assert "[DONE]" not in text


def queue_sagemaker_result(moto_server: str, body: dict[str, Any]) -> None:
    import urllib.request

    payload = json.dumps({"results": [{"Body": json.dumps(body), "ContentType": "application/json"}]}).encode()
    request = urllib.request.Request(moto_server + "/moto-api/static/sagemaker/endpoint-results", data=payload,
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 201


async def test_sagemaker_messages_schema_through_moto(moto_server: str) -> None:
    queue_sagemaker_result(moto_server, {"id": "lmi-1", "object": "chat.completion", "created": 1, "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9}})
    async with serve_gateway(make_config([sagemaker_tier(moto_server)])) as gateway:
        status, headers, text = await post(gateway, {**CHAT, "messages": [{"role": "user", "content": "msg schema"}]})
    assert status == 200 and headers["x-neuroscale-tier"] == "lmi"
    assert json.loads(text)["choices"][0]["message"]["content"] == "Paris."


async def test_sagemaker_inputs_schema_through_moto(moto_server: str) -> None:
    queue_sagemaker_result(moto_server, {"generated_text": " Paris.", "details": {
        "finish_reason": "length", "generated_tokens": 2, "tokens": [{"text": " Par", "log_prob": -0.2}]}})
    async with serve_gateway(make_config([sagemaker_tier(moto_server, payload="inputs")])) as gateway:
        status, _, text = await post(gateway, {**CHAT, "messages": [{"role": "user", "content": "inputs schema"}]})
    choice = json.loads(text)["choices"][0]
    assert status == 200
    assert (choice["message"]["content"], choice["finish_reason"]) == (" Paris.", "length")


async def test_sagemaker_response_stream_from_the_wire(aws: EventStreamServer) -> None:
    lines = b"".join(json.dumps(line).encode() + b"\n" for line in (
        {"token": {"text": "Par", "log_prob": -0.1}},
        {"token": {"text": "is.", "log_prob": -0.1}, "generated_text": "Paris.", "details": {"finish_reason": "eos_token"}},
    ))
    aws.script = [encode_event("PayloadPart", part) for part in (lines[:10], lines[10:45], lines[45:])]
    async with serve_gateway(make_config([sagemaker_tier(aws.url, payload="inputs")])) as gateway:
        status, headers, text = await post(gateway, {**CHAT, "stream": True})
    assert status == 200 and headers["x-neuroscale-tier"] == "lmi"
    assert streamed(text)[0] == "Paris."
    path, sent = aws.requests[0]
    assert path == "/endpoints/llama-ep/invocations-response-stream"
    assert sent["stream"] is True and sent["inputs"].endswith("Assistant:")


async def test_bedrock_throttling_on_the_last_tier_is_a_429() -> None:
    client, stubber = stubbed_bedrock()
    stubber.add_client_error("converse", service_error_code="ThrottlingException", service_message="Rate exceeded",
                             http_status_code=429)
    with stubber:
        upstream = BedrockUpstream(BedrockTier(**bedrock_tier()), client=client)
        async with serve_gateway(make_config([bedrock_tier()]), upstreams={"claude": upstream}) as gateway:
            status, _, text = await post(gateway, CHAT)
    assert status == 429
    assert json.loads(text)["error"]["code"] == "rate_limit_exceeded"
