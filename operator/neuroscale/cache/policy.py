"""What may be cached and served from cache (pure).

Decisions, conservative because a wrong answer from cache is worse than a miss:
- Only "chat" and "completions" with a model and well-formed messages/prompt.
- Only one choice: n > 1 or best_of > 1 asks for variety, which a replay cannot give.
- Only if the effective temperature is <= `cacheable_temperature_max` (default 0: deterministic requests only). An
  absent temperature means OpenAI's default of 1.0, so requests must ask for temperature 0 to be cached by default.
- Streaming requests are cacheable: the complete answer is stored once and may be replayed as a stream.
- Requests with tools are cacheable exactly (the same input yields the same tool call decision; the client runs the
  tool either way), but answers that call tools are never served semantically: the call's arguments come from the
  wording of the original question.
- Only complete, successful answers are stored: a chat/text completion with choices that all ended in "stop",
  "length" or "tool_calls"/"function_call".
"""

from __future__ import annotations

from typing import Any

ENDPOINTS = ("chat", "completions")
_FINISHED = frozenset({"stop", "length", "tool_calls", "function_call"})
_OBJECTS = {"chat": "chat.completion", "completions": "text_completion"}
# OpenAI's documented default when temperature is omitted.
DEFAULT_TEMPERATURE = 1.0


def is_cacheable_request(endpoint: str, request: Any, temperature_max: float) -> bool:
    if endpoint not in ENDPOINTS or not isinstance(request, dict):
        return False
    if not isinstance(request.get("model"), str) or not request["model"]:
        return False
    if endpoint == "chat":
        messages = request.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return False
    elif not isinstance(request.get("prompt"), (str, list)):
        return False
    for many in ("n", "best_of"):
        count = request.get(many)
        if count is not None and count != 1:
            return False
    temperature = request.get("temperature")
    if temperature is None:
        temperature = DEFAULT_TEMPERATURE
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        return False
    return temperature <= temperature_max


def is_storable_response(endpoint: str, response: Any) -> bool:
    if not isinstance(response, dict) or "error" in response:
        return False
    if response.get("object") not in (None, _OBJECTS.get(endpoint)):
        return False
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    return all(isinstance(c, dict) and c.get("finish_reason") in _FINISHED for c in choices)


def servable_semantically(response: dict[str, Any]) -> bool:
    """An answer that calls tools is tied to the exact wording that produced its arguments."""
    for choice in response.get("choices", []):
        message = choice.get("message") or {}
        if choice.get("finish_reason") in ("tool_calls", "function_call") or message.get("tool_calls") or message.get("function_call"):
            return False
    return True
