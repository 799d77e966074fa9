"""OpenAI request validation and error shapes: what the gateway accepts, and how it says no."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

Endpoint = Literal["chat", "completions"]

_COMMON_FIELDS = frozenset(
    {
        "model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "n", "stop", "presence_penalty",
        "frequency_penalty", "seed", "logprobs", "user", "logit_bias",
    }
)
KNOWN_FIELDS: dict[Endpoint, frozenset[str]] = {
    "chat": _COMMON_FIELDS
    | {
        "messages", "max_completion_tokens", "top_logprobs", "tools", "tool_choice", "parallel_tool_calls",
        "response_format", "metadata", "store", "service_tier",
    },
    "completions": _COMMON_FIELDS | {"prompt", "echo", "suffix", "best_of"},
}
_CHAT_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
# Deepest nesting of arrays and objects accepted in a request or an upstream answer. OpenAI payloads nest a handful
# of levels (tool schemas a few more); the bound keeps every later recursive walk (canonical cache keys, re-encoding)
# far from Python's recursion limit.
MAX_JSON_DEPTH = 64


class OpenAIError(Exception):
    """An error the gateway answers with, in OpenAI's `{"error": {message, type, param, code}}` shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid(message: str, param: str | None = None, code: str | None = None) -> OpenAIError:
    return OpenAIError(400, message, param=param, code=code)


@dataclass(frozen=True)
class ParsedRequest:
    endpoint: Endpoint
    body: dict[str, Any]

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def include_usage(self) -> bool:
        options = self.body.get("stream_options") or {}
        return bool(options.get("include_usage"))

    @property
    def client_wants_logprobs(self) -> bool:
        return bool(self.body.get("logprobs"))


class JSONTooDeep(ValueError):
    """A JSON document nests arrays and objects deeper than MAX_JSON_DEPTH."""


def loads_bounded(raw: str | bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """json.loads that refuses documents nested deeper than `max_depth` (JSONTooDeep) instead of exhausting the
    recursion limit; malformed input raises ValueError (json.JSONDecodeError, UnicodeDecodeError) as json.loads does."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels") from None
    if _depth_exceeds(value, max_depth):
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels")
    return value


def _depth_exceeds(value: Any, max_depth: int) -> bool:
    """Iterative, so the check itself cannot overflow the stack."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > max_depth:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_request(endpoint: Endpoint, raw: bytes) -> ParsedRequest:
    """Decode and check a request body; raise OpenAIError(400) naming the offending parameter."""
    try:
        body = loads_bounded(raw)
    except JSONTooDeep:
        raise invalid(f"The request body nests JSON deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json") from None
    except ValueError as error:
        raise invalid(f"The request body is not valid JSON: {error}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", code="invalid_json")
    unknown = sorted(set(body) - KNOWN_FIELDS[endpoint])
    if unknown:
        raise invalid(f"Unrecognized request argument supplied: {unknown[0]}", param=unknown[0], code="unknown_parameter")
    _check_common(body)
    if endpoint == "chat":
        _check_messages(body.get("messages"))
    else:
        _check_prompt(body)
    return ParsedRequest(endpoint, body)


def _check_common(body: dict[str, Any]) -> None:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("you must provide a model parameter", param="model", code="missing_required_parameter")
    if "stream" in body and not isinstance(body["stream"], bool):
        raise invalid("'stream' must be a boolean.", param="stream")
    options = body.get("stream_options")
    if options is not None:
        if not body.get("stream"):
            raise invalid("The 'stream_options' parameter is only allowed when 'stream' is enabled.", "stream_options")
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise invalid("'stream_options' supports only {'include_usage': bool}.", param="stream_options")
    if body.get("n", 1) != 1:
        raise invalid("The cascade judges one answer per request; only n=1 is supported.", "n", "unsupported_value")
    if body.get("best_of", 1) != 1:
        raise invalid("Only best_of=1 is supported.", param="best_of", code="unsupported_value")
    if body.get("echo"):
        raise invalid("echo is not supported by the cascade.", param="echo", code="unsupported_value")
    for name, low, high in (("temperature", 0, 2), ("top_p", 0, 1), ("presence_penalty", -2, 2), ("frequency_penalty", -2, 2)):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high):
            raise invalid(f"'{name}' must be a number between {low} and {high}.", param=name)
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise invalid(f"'{name}' must be a positive integer.", param=name)
    stop = body.get("stop")
    if stop is not None and not (
        isinstance(stop, str) or (isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop))
    ):
        raise invalid("'stop' must be a string or a list of at most 4 strings.", param="stop")


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise invalid("'messages' must be a non-empty array.", param="messages", code="missing_required_parameter")
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict) or message.get("role") not in _CHAT_ROLES:
            raise invalid(f"{param} must be an object with a role in {sorted(_CHAT_ROLES)}.", param=param)
        content = message.get("content")
        if content is None and not message.get("tool_calls"):
            raise invalid(f"{param}.content is required.", param=f"{param}.content")
        if content is not None and not isinstance(content, str | list):
            raise invalid(f"{param}.content must be a string or an array of parts.", param=f"{param}.content")


def _check_prompt(body: dict[str, Any]) -> None:
    prompt = body.get("prompt")
    if not isinstance(prompt, str):
        raise invalid("'prompt' must be a string (batched prompts are not supported).", param="prompt")


def message_text(content: Any) -> str:
    """The text of a chat message's content, joining text parts of an array."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text")
    return ""


def prompt_text(endpoint: Endpoint, body: dict[str, Any]) -> str:
    if endpoint == "completions":
        return str(body.get("prompt", ""))
    return "\n".join(message_text(message.get("content")) for message in body.get("messages", []))


# Shapes of upstream answers. Everything the gateway reads from an answer (judging, assembling a stream, stripping
# hidden fields, caching, replaying) goes through these checks first, so an upstream that sends a wrong shape is an
# upstream failure (502, or the next tier) rather than a crash in the gateway.


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _optional(value: Any, kind: type | tuple[type, ...]) -> bool:
    return value is None or isinstance(value, kind)


def _logprobs_problem(endpoint: Endpoint, logprobs: Any) -> str | None:
    if logprobs is None:
        return None
    if not isinstance(logprobs, dict):
        return "logprobs is not an object"
    if endpoint == "chat":
        content = logprobs.get("content")
        if not _optional(content, list):
            return "logprobs.content is not an array"
        for item in content or ():
            if not isinstance(item, dict) or ("logprob" in item and not _is_number(item["logprob"])):
                return "logprobs.content holds an item without a numeric logprob"
        return None
    values = logprobs.get("token_logprobs")
    if not _optional(values, list) or any(value is not None and not _is_number(value) for value in values or ()):
        return "logprobs.token_logprobs is not an array of numbers"
    return None


def _tool_calls_problem(calls: Any) -> str | None:
    if calls is None:
        return None
    if not isinstance(calls, list):
        return "tool_calls is not an array"
    for call in calls:
        if not isinstance(call, dict) or not _optional(call.get("index", 0), int) or not _optional(call.get("id"), str):
            return "tool_calls holds a malformed call"
        function = call.get("function")
        if not _optional(function, dict):
            return "tool_calls holds a call whose function is not an object"
        if function and (not _optional(function.get("name"), str) or not _optional(function.get("arguments"), str)):
            return "tool_calls holds a function whose name or arguments are not strings"
    return None


def _content_problem(content: Any) -> str | None:
    if content is None or isinstance(content, str):
        return None
    if isinstance(content, list) and all(isinstance(part, dict) for part in content):
        return None
    return "content is neither a string nor an array of parts"


def _choice_problem(endpoint: Endpoint, choice: Any, chunk: bool) -> str | None:
    if not isinstance(choice, dict):
        return "a choice is not an object"
    if not _optional(choice.get("index", 0), int) or not _optional(choice.get("finish_reason"), str):
        return "a choice has a malformed index or finish_reason"
    if endpoint == "completions":
        if not _optional(choice.get("text"), str):
            return "a choice's text is not a string"
    else:
        part = choice.get("delta" if chunk else "message")
        if not _optional(part, dict):
            return f"a choice's {'delta' if chunk else 'message'} is not an object"
        part = part or {}
        problem = _content_problem(part.get("content")) or _tool_calls_problem(part.get("tool_calls"))
        if problem is None and chunk and not _optional(part.get("content"), str):
            problem = "a delta's content is not a string"
        if problem:
            return problem
    return _logprobs_problem(endpoint, choice.get("logprobs"))


def answer_problem(endpoint: Endpoint, answer: Any, *, chunk: bool) -> str | None:
    """What is wrong with a complete answer (`chunk=False`) or a stream chunk (`chunk=True`), or None when the
    gateway can safely read it."""
    if not isinstance(answer, dict):
        return "the answer is not a JSON object"
    choices = answer.get("choices")
    if not isinstance(choices, list) or (not chunk and not choices):
        return "the answer has no choices array"
    if not _optional(answer.get("usage"), dict):
        return "usage is not an object"
    if not _optional(answer.get("model"), str) or not _optional(answer.get("id"), str):
        return "id or model is not a string"
    for choice in choices:
        problem = _choice_problem(endpoint, choice, chunk)
        if problem:
            return problem
    return None


# Token kinds as the gateway's metrics name them, with the OpenAI `usage` field each comes from.
TOKEN_KINDS = (("prompt", "prompt_tokens"), ("completion", "completion_tokens"))


def usage_tokens(usage: Any) -> dict[str, int]:
    """{"prompt": n, "completion": n} from an OpenAI `usage` object; missing or malformed counts are 0."""
    if not isinstance(usage, dict):
        return {"prompt": 0, "completion": 0}
    out = {}
    for kind, key in TOKEN_KINDS:
        value = usage.get(key)
        out[kind] = value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
    return out
