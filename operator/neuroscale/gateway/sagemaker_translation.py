"""OpenAI ⇄ SageMaker AI (LMI container) translation, pure. Two request schemas, chosen per tier by `payload`:

* `messages` (default): the OpenAI chat-completions schema that LMI accepts at /invocations. Requests pass through
  (without `model`, which the endpoint fixes, and `stream_options`); answers come back as chat.completion objects,
  and streams as one chat.completion.chunk JSON object per line (an SSE `data:` prefix is accepted too). Chosen as
  default because it keeps roles, stop sequences and log-probs intact with no prompt templating in the gateway.
* `inputs`: LMI's rolling-batch schema `{"inputs", "parameters", "stream"}` for containers without chat support.
  Chat turns are rendered as a plain "Role: text" transcript ending in "Assistant:"; `details: true` asks for
  finish reason, token count and per-token log-probs; streams are JSON lines of `{"token": {"text", "log_prob"}}`
  with `details` on the last line.
A completions request is sent as one user turn in the `messages` schema and as the raw prompt in `inputs`.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from neuroscale.gateway.protocol import Endpoint, loads_bounded, message_text
from neuroscale.gateway.streaming import LineSplitter, StreamTooLarge
from neuroscale.gateway.upstreams.base import UpstreamError

Payload = Literal["messages", "inputs"]
_INPUTS_UNSUPPORTED = (
    "tools", "tool_choice", "parallel_tool_calls", "response_format", "logit_bias", "top_logprobs", "suffix",
)
_FINISH = {"length": "length", "eos_token": "stop", "stop_sequence": "stop", "stop": "stop", "tool_calls": "tool_calls"}


def unsupported_parameter(payload: Payload, body: dict[str, Any]) -> str | None:
    if payload == "messages":
        return None
    for name in _INPUTS_UNSUPPORTED:
        if body.get(name) not in (None, False):
            return name
    for index, message in enumerate(body.get("messages") or ()):
        if message.get("role") == "tool" or message.get("tool_calls"):
            return f"messages[{index}]"
    return None


def to_request(endpoint: Endpoint, payload: Payload, body: dict[str, Any], stream: bool) -> bytes:
    """The JSON body for InvokeEndpoint(WithResponseStream)."""
    if payload == "messages":
        request = {key: value for key, value in body.items() if key not in ("model", "stream_options", "prompt")}
        if endpoint == "completions":
            request["messages"] = [{"role": "user", "content": body.get("prompt", "")}]
            if request.get("logprobs") is not None:
                request["logprobs"] = bool(request["logprobs"])
        request["stream"] = stream
        return json.dumps(request).encode()
    parameters: dict[str, Any] = {"details": True}
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens")
    if max_tokens:
        parameters["max_new_tokens"] = max_tokens
    for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
        if body.get(name) is not None:
            parameters[name] = body[name]
    if body.get("temperature") is not None:
        parameters["do_sample"] = body["temperature"] > 0
    stop = body.get("stop")
    if stop:
        parameters["stop"] = [stop] if isinstance(stop, str) else list(stop)
    inputs = body.get("prompt", "") if endpoint == "completions" else _transcript(body.get("messages") or [])
    return json.dumps({"inputs": inputs, "parameters": parameters, "stream": stream}).encode()


def _transcript(messages: list[dict[str, Any]]) -> str:
    lines = [f"{message['role'].capitalize()}: {message_text(message.get('content'))}" for message in messages]
    return "\n".join([*lines, "Assistant:"])


def from_response(
    endpoint: Endpoint, payload: Payload, raw: bytes, model: str, response_id: str, created: int
) -> dict[str, Any]:
    """The OpenAI response equivalent to an endpoint's answer."""
    try:
        answer = loads_bounded(raw)
    except ValueError:
        raise UpstreamError("error", f"SageMaker endpoint answered with non-JSON: {raw[:200]!r}") from None
    if isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    if not isinstance(answer, dict):
        raise UpstreamError("error", "SageMaker endpoint answered with an unexpected shape")
    head = {"id": answer.get("id") or response_id, "created": answer.get("created") or created, "model": model}
    if payload == "messages":
        choices = answer.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise UpstreamError("error", "SageMaker endpoint answered without choices")
        if endpoint == "chat":
            return {**answer, **head, "object": "chat.completion"}
        choice = choices[0]
        text = message_text((choice.get("message") or {}).get("content"))
        converted = {"index": 0, "text": text, "logprobs": None, "finish_reason": choice.get("finish_reason")}
        result = {**head, "object": "text_completion", "choices": [converted]}
        if answer.get("usage"):
            result["usage"] = answer["usage"]
        return result
    if "generated_text" not in answer:
        raise UpstreamError("error", "SageMaker endpoint answered without generated_text")
    details = answer.get("details") or {}
    text = str(answer["generated_text"] or "")
    finish = _FINISH.get(str(details.get("finish_reason")), "stop")
    tokens = [token for token in details.get("tokens") or () if isinstance(token, dict)]
    if endpoint == "chat":
        logprobs = {"content": [{"token": t.get("text", ""), "logprob": t["log_prob"]} for t in tokens if "log_prob" in t]}
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs or None,
                  "finish_reason": finish}
        result = {**head, "object": "chat.completion", "choices": [choice]}
    else:
        token_logprobs = {"tokens": [t.get("text", "") for t in tokens], "token_logprobs": [t.get("log_prob") for t in tokens]}
        choice = {"index": 0, "text": text, "logprobs": token_logprobs if tokens else None, "finish_reason": finish}
        result = {**head, "object": "text_completion", "choices": [choice]}
    if isinstance(details.get("generated_tokens"), int):
        result["usage"] = {"prompt_tokens": 0, "completion_tokens": details["generated_tokens"],
                           "total_tokens": details["generated_tokens"]}
    return result


class StreamDecoder:
    """Turns InvokeEndpointWithResponseStream payload parts (split anywhere) into OpenAI chunks."""

    def __init__(
        self, endpoint: Endpoint, payload: Payload, model: str, response_id: str, created: int,
        max_line_bytes: int = 1 << 20,
    ) -> None:
        self.endpoint = endpoint
        self.payload = payload
        self.finished = False
        self._lines = LineSplitter(max_line_bytes)
        self._started = False
        self._head = {"id": response_id, "created": created, "model": model}
        self._object = "chat.completion.chunk" if endpoint == "chat" else "text_completion"

    def feed(self, part: bytes) -> list[dict[str, Any]]:
        try:
            lines = self._lines.feed(part)
        except StreamTooLarge as error:
            raise UpstreamError("error", f"SageMaker stream: {error}") from None
        chunks: list[dict[str, Any]] = []
        for line in lines:
            chunks.extend(self._line(line))
        return chunks

    def close(self) -> list[dict[str, Any]]:
        return self._line(self._lines.rest())

    def _line(self, line: bytes) -> list[dict[str, Any]]:
        line = line.strip().removeprefix(b"data:").strip()
        if not line or line == b"[DONE]":
            return []
        try:
            event = loads_bounded(line)
        except ValueError:
            raise UpstreamError("error", f"SageMaker stream sent a malformed line: {line[:200]!r}") from None
        if not isinstance(event, dict):
            raise UpstreamError("error", "SageMaker stream sent a malformed line")
        if "error" in event:
            raise UpstreamError("error", f"SageMaker stream failed: {event['error']}")
        return self._from_messages(event) if self.payload == "messages" else self._from_inputs(event)

    def _from_messages(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        choices = event.get("choices") or []
        if any(isinstance(c, dict) and c.get("finish_reason") for c in choices):
            self.finished = True
        if self.endpoint == "chat":
            return [{**event, **self._head, "object": self._object}]
        converted = [
            {"index": 0, "text": (c.get("delta") or {}).get("content") or "", "logprobs": None,
             "finish_reason": c.get("finish_reason")}
            for c in choices if isinstance(c, dict)
        ]
        chunk: dict[str, Any] = {**self._head, "object": self._object, "choices": converted}
        if event.get("usage"):
            chunk["usage"] = event["usage"]
        return [chunk]

    def _from_inputs(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        chunks = []
        if self.endpoint == "chat" and not self._started:
            self._started = True
            chunks.append(self._chunk({"role": "assistant", "content": ""}, None, None))
        token = event.get("token") or {}
        if token.get("text"):
            chunks.append(self._chunk({"content": token["text"]}, None, token.get("log_prob")))
        details = event.get("details")
        if isinstance(details, dict) and details.get("finish_reason"):
            self.finished = True
            chunks.append(self._chunk({}, _FINISH.get(str(details["finish_reason"]), "stop"), None))
        return chunks

    def _chunk(self, delta: dict[str, Any], finish: str | None, logprob: float | None) -> dict[str, Any]:
        if self.endpoint == "chat":
            logprobs = {"content": [{"token": delta.get("content", ""), "logprob": logprob}]} if logprob is not None else None
            choice: dict[str, Any] = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        else:
            text = delta.get("content", "")
            logprobs = {"tokens": [text], "token_logprobs": [logprob]} if logprob is not None else None
            choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}
        return {**self._head, "object": self._object, "choices": [choice]}
