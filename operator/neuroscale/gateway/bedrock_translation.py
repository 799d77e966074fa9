"""OpenAI ⇄ Amazon Bedrock Converse translation, pure: request kwargs out, OpenAI responses and chunks back.

Mapped: system/developer messages → `system`; user/assistant turns → `messages` (consecutive turns of one role merged,
since Converse requires alternation); text content parts; max_tokens / max_completion_tokens → maxTokens;
temperature; top_p → topP; stop → stopSequences; stopReason → finish_reason; usage. A completions request becomes
one user turn. Tools, images, log-probs, penalties, seeds and logit bias are not translated, and a request using
them is rejected up front with the parameter named (`unsupported_parameter`).
"""

from __future__ import annotations

from typing import Any

from neuroscale.gateway.protocol import Endpoint, invalid, message_text
from neuroscale.gateway.upstreams.base import UpstreamError

_UNTRANSLATED = (
    "tools", "tool_choice", "parallel_tool_calls", "response_format", "logit_bias", "logprobs", "top_logprobs",
    "seed", "presence_penalty", "frequency_penalty", "suffix",
)
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "guardrail_intervened": "content_filter",
    "content_filtered": "content_filter",
}
_STREAM_EXCEPTIONS = (
    "internalServerException", "modelStreamErrorException", "validationException", "throttlingException",
    "serviceUnavailableException",
)


def unsupported_parameter(endpoint: Endpoint, body: dict[str, Any]) -> str | None:
    for name in _UNTRANSLATED:
        if body.get(name) not in (None, False, 0):
            return name
    for index, message in enumerate(body.get("messages") or ()):
        if message.get("role") == "tool" or message.get("tool_calls"):
            return f"messages[{index}]"
        content = message.get("content")
        if isinstance(content, list) and any(part.get("type") != "text" for part in content if isinstance(part, dict)):
            return f"messages[{index}].content"
    return None


def to_converse(endpoint: Endpoint, body: dict[str, Any], model_id: str) -> dict[str, Any]:
    """Keyword arguments for `converse` / `converse_stream`."""
    chat = body.get("messages") if endpoint == "chat" else [{"role": "user", "content": body.get("prompt", "")}]
    system: list[dict[str, str]] = []
    messages: list[dict[str, Any]] = []
    for message in chat or ():
        text = message_text(message.get("content"))
        if message["role"] in ("system", "developer"):
            if text:
                system.append({"text": text})
            continue
        if not text:
            continue
        if messages and messages[-1]["role"] == message["role"]:
            messages[-1]["content"].append({"text": text})
        else:
            messages.append({"role": message["role"], "content": [{"text": text}]})
    if not messages or messages[0]["role"] != "user":
        raise invalid("A Bedrock tier needs the conversation to start with a non-empty user message.", param="messages")
    inference: dict[str, Any] = {}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        inference["maxTokens"] = max_tokens
    if body.get("temperature") is not None:
        inference["temperature"] = body["temperature"]
    if body.get("top_p") is not None:
        inference["topP"] = body["top_p"]
    stop = body.get("stop")
    if stop:
        inference["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    kwargs: dict[str, Any] = {"modelId": model_id, "messages": messages}
    if system:
        kwargs["system"] = system
    if inference:
        kwargs["inferenceConfig"] = inference
    return kwargs


def _usage(usage: dict[str, Any] | None) -> dict[str, int] | None:
    if not usage:
        return None
    prompt, completion = int(usage.get("inputTokens", 0)), int(usage.get("outputTokens", 0))
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def from_converse(
    endpoint: Endpoint, response: dict[str, Any], model: str, response_id: str, created: int
) -> dict[str, Any]:
    """The OpenAI response equivalent to a Converse response."""
    content = ((response.get("output") or {}).get("message") or {}).get("content") or []
    text = "".join(block.get("text", "") for block in content if isinstance(block, dict))
    finish = FINISH_REASONS.get(response.get("stopReason", ""), "stop")
    head = {"id": response_id, "created": created, "model": model}
    if endpoint == "completions":
        choice: dict[str, Any] = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
        answer = {**head, "object": "text_completion", "choices": [choice]}
    else:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None, "finish_reason": finish}
        answer = {**head, "object": "chat.completion", "choices": [choice]}
    usage = _usage(response.get("usage"))
    if usage:
        answer["usage"] = usage
    return answer


class ConverseStreamTranslator:
    """Turns ConverseStream events into OpenAI chunks; `finished` once messageStop arrived."""

    def __init__(self, endpoint: Endpoint, model: str, response_id: str, created: int) -> None:
        self.endpoint = endpoint
        self.finished = False
        self._head = {"id": response_id, "created": created, "model": model}
        self._object = "chat.completion.chunk" if endpoint == "chat" else "text_completion"

    def _chunk(self, text: str | None, finish: str | None, role: bool = False) -> dict[str, Any]:
        if self.endpoint == "completions":
            choice: dict[str, Any] = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        else:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {**self._head, "object": self._object, "choices": [choice]}

    def translate(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        for name in _STREAM_EXCEPTIONS:
            if name in event:
                message = (event[name] or {}).get("message", name)
                raise UpstreamError("error", f"Bedrock stream failed: {name}: {message}")
        if "messageStart" in event:
            return [self._chunk(None, None, role=True)] if self.endpoint == "chat" else []
        if "contentBlockDelta" in event:
            text = ((event["contentBlockDelta"] or {}).get("delta") or {}).get("text")
            return [self._chunk(text, None)] if text else []
        if "messageStop" in event:
            self.finished = True
            reason = FINISH_REASONS.get((event["messageStop"] or {}).get("stopReason", ""), "stop")
            return [self._chunk(None, reason)]
        if "metadata" in event:
            usage = _usage((event["metadata"] or {}).get("usage"))
            return [{**self._head, "object": self._object, "choices": [], "usage": usage}] if usage else []
        return []
