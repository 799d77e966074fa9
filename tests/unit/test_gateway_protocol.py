"""Request validation and error shapes (malformed JSON, unknown and unsupported parameters, ranges, messages),
GatewayConfig validation and JSON round trip, the cache scope, SSE decoding split at any byte, stream assembly
(content, tool calls, usage, log-probs) and replay of a complete answer as chunks that assemble back to it."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuroscale.gateway.config import ConfigError, GatewayConfig, parse_config
from neuroscale.gateway.protocol import OpenAIError, parse_request
from neuroscale.gateway.scope import cache_scope
from neuroscale.gateway.streaming import SSEDecoder, StreamAssembler, encode_event, replay_chunks, strip_hidden
from tests.support.gateway_harness import make_config, openai_tier


def raw(**body: object) -> bytes:
    return json.dumps({"model": "cascade", "messages": [{"role": "user", "content": "hi"}], **body}).encode()


def rejected(endpoint: str, payload: bytes) -> OpenAIError:
    with pytest.raises(OpenAIError) as caught:
        parse_request(endpoint, payload)  # type: ignore[arg-type]
    assert caught.value.status == 400
    assert set(caught.value.body()["error"]) == {"message", "type", "param", "code"}
    return caught.value


def test_valid_chat_request_passes_known_fields_through() -> None:
    parsed = parse_request("chat", raw(temperature=0, stream=True, stream_options={"include_usage": True}, user="u"))
    assert parsed.stream and parsed.include_usage
    assert parsed.body["user"] == "u"


@pytest.mark.parametrize(
    ("payload", "param", "code"),
    [
        (b"{not json", None, "invalid_json"),
        (b"[1, 2]", None, "invalid_json"),
        (b"\xff\xfe", None, "invalid_json"),
        (raw(frobnicate=1), "frobnicate", "unknown_parameter"),
        (raw(n=2), "n", "unsupported_value"),
        (raw(temperature=3), "temperature", None),
        (raw(temperature=True), "temperature", None),
        (raw(max_tokens=0), "max_tokens", None),
        (raw(stop=["a", "b", "c", "d", "e"]), "stop", None),
        (raw(stream_options={"include_usage": True}), "stream_options", None),
        (raw(stream="yes"), "stream", None),
        (raw(messages=[]), "messages", "missing_required_parameter"),
        (raw(messages=[{"role": "wizard", "content": "x"}]), "messages[0]", None),
        (raw(messages=[{"role": "user", "content": 5}]), "messages[0].content", None),
        (json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(), "model", "missing_required_parameter"),
    ],
)
def test_bad_chat_requests_are_named(payload: bytes, param: str | None, code: str | None) -> None:
    error = rejected("chat", payload)
    assert error.param == param
    assert error.code == code


def test_completions_validation() -> None:
    assert parse_request("completions", json.dumps({"model": "m", "prompt": "p"}).encode()).body["prompt"] == "p"
    assert rejected("completions", json.dumps({"model": "m", "prompt": ["a", "b"]}).encode()).param == "prompt"
    assert rejected("completions", json.dumps({"model": "m", "prompt": "p", "echo": True}).encode()).param == "echo"
    assert rejected("completions", json.dumps({"model": "m", "prompt": "p", "messages": []}).encode()).param == "messages"


def test_config_round_trips_through_json() -> None:
    config = make_config(
        [openai_tier("small", "http://small:8080/v1", api_key_env="SMALL_KEY"),
         {"kind": "bedrock", "name": "claude", "model_id": "anthropic.claude-3-haiku", "region": "us-east-1"},
         {"kind": "sagemaker", "name": "lmi", "endpoint_name": "ep", "region": "us-west-2", "payload": "inputs"}],
        cache={"mode": "exact", "backend": "memory"},
        auth={"mode": "trusted_header", "tenant_header": "x-tenant", "proxy_cidrs": ["10.0.0.0/8"]},
        quotas={"redis_url": "redis://quota:6379/0", "tokens_per_minute": 1000},
    )
    assert parse_config(config.model_dump_json()) == config
    assert [tier.kind for tier in config.tiers] == ["openai", "bedrock", "sagemaker"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tiers": []}, "at least 1"),
        ({"tiers": [{"kind": "openai", "name": "a", "url": "http://a", "model": "m"}] * 2}, "repeated: a"),
        ({"model_name": "a"}, "must differ from every tier name"),
        ({"escalation": {"default_max_tier": "nope"}}, "not a tier"),
        ({"escalation": {"refusal_patterns": ["("]}}, "not a valid regular expression"),
        ({"cache": {"mode": "fuzzy"}}, "mode must be"),
        ({"surprise": 1}, "Extra inputs are not permitted"),
        ({"tiers": [{"kind": "grpc", "name": "a"}]}, "does not match any of the expected tags"),
    ],
)
def test_bad_configs_say_why(change: dict, message: str) -> None:
    document = {"model_name": "cascade", "tiers": [{"kind": "openai", "name": "a", "url": "http://a/v1", "model": "m"}]}
    with pytest.raises(ConfigError, match=message):
        parse_config(json.dumps({**document, **change}))


def test_config_file_that_is_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="expected a mapping"):
        parse_config("[]")
    assert GatewayConfig.model_fields["max_body_bytes"].default == 1 << 20


def test_cache_scope_isolates_tenants_keys_and_hints() -> None:
    base = cache_scope("team-a", "key-a")
    assert base == cache_scope("team-a", "key-a")
    assert base != cache_scope("team-a", "key-b")
    assert base != cache_scope("team-b", "key-a")
    assert cache_scope("team-a") == cache_scope("team-a", "") != cache_scope("team-b")
    assert cache_scope("team-a", None, ("large", None)) != cache_scope("team-a", None, (None, "large"))
    assert "key-a" not in base


@given(cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8))
def test_sse_decoder_handles_any_split(cuts: list[int]) -> None:
    events = [{"n": index, "text": "a\u00e9b"} for index in range(5)]
    stream = b"".join(encode_event(event) for event in events) + b": comment\r\n\r\ndata: [DONE]\n\n"
    points = sorted({min(cut, len(stream)) for cut in cuts})
    decoder, payloads = SSEDecoder(), []
    for start, end in zip([0, *points], [*points, len(stream)], strict=True):
        payloads.extend(decoder.feed(stream[start:end]))
    payloads.extend(decoder.flush())
    assert payloads[-1] == "[DONE]"
    assert [json.loads(payload) for payload in payloads[:-1]] == events


def test_assembler_merges_tool_call_fragments_and_usage() -> None:
    assembler = StreamAssembler("chat")
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"ci'}}
    for chunk in (
        {"id": "c", "created": 1, "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant", "tool_calls": [call]}}]},
        {"id": "c", "choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'ty": 1}'}}]}}]},
        {"id": "c", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        {"id": "c", "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}},
    ):
        assembler.add(chunk)
    response = assembler.response()
    assert response["choices"][0]["message"]["tool_calls"] == [
        {"id": "call_1", "type": "function", "function": {"name": "lookup", "arguments": '{"city": 1}'}}
    ]
    assert response["choices"][0]["finish_reason"] == "tool_calls"
    assert response["usage"]["total_tokens"] == 7
    assert assembler.view(complete=True).has_tool_calls


@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_replay_assembles_back_to_the_cached_answer(endpoint: str) -> None:
    text = "The capital of France is  Paris.\nIt is on the Seine."
    if endpoint == "chat":
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": "stop"}
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}
        kind = "text_completion"
    cached = {"id": "x", "created": 3, "model": "m", "object": kind, "choices": [choice],
              "usage": {"prompt_tokens": 1, "completion_tokens": 12, "total_tokens": 13}}
    chunks = list(replay_chunks(endpoint, cached, include_usage=True))  # type: ignore[arg-type]
    assert len(chunks) > 5
    assembler = StreamAssembler(endpoint)  # type: ignore[arg-type]
    for chunk in chunks:
        assembler.add(chunk)
    assert assembler.response() == cached
    assert "usage" not in list(replay_chunks(endpoint, cached, include_usage=False))[-1]  # type: ignore[arg-type]


def test_strip_hidden_removes_what_the_client_did_not_ask_for() -> None:
    chunk = {"choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": {"content": []}}], "usage": None}
    assert strip_hidden(chunk, keep_logprobs=False, keep_usage=False) == {
        "choices": [{"index": 0, "delta": {"content": "a"}, "logprobs": None}]
    }
    assert strip_hidden({"choices": [], "usage": {"total_tokens": 1}}, False, False) is None
    assert strip_hidden(chunk, keep_logprobs=True, keep_usage=True) is chunk
