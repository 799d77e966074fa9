"""What the cache accepts: cacheable requests (endpoint, n, temperature, shape) and storable responses
(complete, successful), plus which answers may be served semantically (no tool calls)."""

from __future__ import annotations

from typing import Any

import pytest

from neuroscale.cache.policy import is_cacheable_request, is_storable_response, servable_semantically


def make_request(**overrides: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, **overrides}


def make_response(finish_reason: str | None = "stop", **message: Any) -> dict[str, Any]:
    return {
        "id": "x", "object": "chat.completion", "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello", **message}, "finish_reason": finish_reason}],
    }


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({}, True),
        ({"n": 1, "stream": True}, True),
        ({"n": 2}, False),
        ({"best_of": 3}, False),
        ({"temperature": 0.7}, False),
        ({"temperature": None}, False),
        ({"temperature": "0"}, False),
        ({"temperature": True}, False),
        ({"model": ""}, False),
        ({"messages": []}, False),
        ({"messages": ["hi"]}, False),
    ],
)
def test_cacheable_request_rules(overrides: dict[str, Any], expected: bool) -> None:
    assert is_cacheable_request("chat", make_request(**overrides), 0.0) is expected


def test_temperature_ceiling_and_endpoints() -> None:
    assert is_cacheable_request("chat", make_request(temperature=0.5), 0.5)
    assert not is_cacheable_request("embeddings", make_request(), 0.0)
    assert not is_cacheable_request("chat", "not a dict", 0.0)  # type: ignore[arg-type]
    assert is_cacheable_request("completions", {"model": "m", "prompt": "x", "temperature": 0}, 0.0)
    assert not is_cacheable_request("completions", {"model": "m", "prompt": 5, "temperature": 0}, 0.0)


def test_only_complete_successful_answers_are_stored() -> None:
    assert is_storable_response("chat", make_response())
    assert is_storable_response("chat", make_response("length"))
    assert not is_storable_response("chat", make_response(None))
    assert not is_storable_response("chat", make_response("content_filter"))
    assert not is_storable_response("chat", {"error": {"message": "boom"}})
    assert not is_storable_response("chat", {"object": "chat.completion", "choices": []})
    assert not is_storable_response("completions", make_response())
    assert not is_storable_response("chat", "text")


def test_tool_calls_are_never_served_semantically() -> None:
    call = [{"id": "c", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    assert servable_semantically(make_response())
    assert not servable_semantically(make_response("tool_calls", tool_calls=call))
    assert not servable_semantically(make_response("stop", tool_calls=call))
