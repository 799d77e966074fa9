"""Server-sent events: decode an upstream stream, re-encode chunks, assemble a stream into a full answer, replay one."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from neuroscale.gateway.escalation import AnswerView, chat_logprobs, completion_logprobs
from neuroscale.gateway.protocol import Endpoint

DONE = b"data: [DONE]\n\n"
_REPLAY_PIECE = re.compile(r"\S+\s*|\s+")


def encode_event(data: dict[str, Any]) -> bytes:
    return b"data: " + dumps_utf8(data) + b"\n\n"


def dumps_utf8(data: Any) -> bytes:
    """Compact JSON as UTF-8. Text that has no UTF-8 form (a lone surrogate such as "\\ud800", which a JSON string
    may carry) is written with \\u escapes instead, so the output is always valid JSON that says the same."""
    try:
        return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
    except UnicodeEncodeError:
        return json.dumps(data, separators=(",", ":")).encode()


class StreamTooLarge(ValueError):
    """A line, an event or a whole stream is larger than its bound."""


class LineSplitter:
    """Splits bytes, fed in pieces split anywhere, into lines (without the newline), each at most `max_line` bytes.

    Linear in the bytes fed: each piece is searched once, and a partial line is kept in a bytearray that grows in
    place; a line longer than the bound raises StreamTooLarge as soon as the bound is passed, without waiting for
    its end."""

    def __init__(self, max_line: int) -> None:
        self._max = max_line
        self._partial = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        lines: list[bytes] = []
        start = 0
        while (end := data.find(b"\n", start)) >= 0:
            if self._partial:
                self._partial += data[start:end]
                line = bytes(self._partial)
                self._partial.clear()
            else:
                line = data[start:end]
            if len(line) > self._max:
                raise StreamTooLarge(f"a stream line is longer than {self._max} bytes")
            lines.append(line)
            start = end + 1
        if len(self._partial) + len(data) - start > self._max:
            raise StreamTooLarge(f"a stream line is longer than {self._max} bytes")
        self._partial += data[start:]
        return lines

    def rest(self) -> bytes:
        """The unterminated last line, emptied."""
        rest = bytes(self._partial)
        self._partial.clear()
        return rest


class SSEDecoder:
    """Incremental SSE parser: feed bytes split anywhere, get back the `data:` payloads of complete events.

    Lines and events are bounded by `max_event_bytes` (StreamTooLarge)."""

    def __init__(self, max_event_bytes: int = 1 << 20) -> None:
        self._lines = LineSplitter(max_event_bytes)
        self._max_event = max_event_bytes
        self._data: list[bytes] = []
        self._data_size = 0

    def feed(self, raw: bytes) -> list[str]:
        return self._events(self._lines.feed(raw))

    def flush(self) -> list[str]:
        """Payloads left when the stream ends without a final blank line."""
        return self._events([self._lines.rest(), b""])

    def _events(self, lines: list[bytes]) -> list[str]:
        payloads: list[str] = []
        for line in lines:
            line = line.rstrip(b"\r")
            if not line:
                if self._data:
                    payloads.append(b"\n".join(self._data).decode())
                    self._data, self._data_size = [], 0
            elif line.startswith(b"data:"):
                data = line[5:].removeprefix(b" ")
                self._data_size += len(data) + 1
                if self._data_size > self._max_event:
                    raise StreamTooLarge(f"a stream event is larger than {self._max_event} bytes")
                self._data.append(data)
        return payloads


class StreamAssembler:
    """Accumulates chat/completion chunks into the equivalent complete response (for judging and caching)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.chunks = 0
        self._text: list[str] = []
        self._logprobs: list[float] = []
        self._logprob_items: list[Any] = []
        self._tool_calls: dict[int, dict[str, Any]] = {}
        self._head: dict[str, Any] = {}
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None

    def add(self, chunk: dict[str, Any]) -> None:
        self.chunks += 1
        if not self._head:
            self._head = {key: chunk[key] for key in ("id", "created", "model", "system_fingerprint") if key in chunk}
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
            logprobs = choice.get("logprobs")
            if self.endpoint == "completions":
                self._text.append(choice.get("text") or "")
                self._logprobs.extend(completion_logprobs(logprobs))
                continue
            delta = choice.get("delta") or {}
            if delta.get("content"):
                self._text.append(delta["content"])
            for call in delta.get("tool_calls") or ():
                self._merge_tool_call(call)
            if isinstance(logprobs, dict):
                self._logprob_items.extend(logprobs.get("content") or ())
                self._logprobs.extend(chat_logprobs(logprobs))

    def _merge_tool_call(self, call: dict[str, Any]) -> None:
        merged = self._tool_calls.setdefault(call.get("index", 0), {"id": "", "type": "function", "function": {}})
        if call.get("id"):
            merged["id"] = call["id"]
        function = call.get("function") or {}
        if function.get("name"):
            merged["function"]["name"] = function["name"]
        merged["function"]["arguments"] = merged["function"].get("arguments", "") + (function.get("arguments") or "")

    @property
    def text(self) -> str:
        return "".join(self._text)

    def view(self, complete: bool) -> AnswerView:
        return AnswerView(self.text, bool(self._tool_calls), tuple(self._logprobs), complete)

    def response(self) -> dict[str, Any]:
        """The complete, non-streaming response this stream amounts to."""
        head = {"id": self._head.get("id", ""), "created": self._head.get("created", 0), "model": self._head.get("model", "")}
        if self.endpoint == "completions":
            choice: dict[str, Any] = {"index": 0, "text": self.text, "logprobs": None, "finish_reason": self.finish_reason}
            response = {**head, "object": "text_completion", "choices": [choice]}
        else:
            message: dict[str, Any] = {"role": "assistant", "content": self.text or None}
            if self._tool_calls:
                message["tool_calls"] = [self._tool_calls[index] for index in sorted(self._tool_calls)]
            logprobs = {"content": self._logprob_items} if self._logprob_items else None
            choice = {"index": 0, "message": message, "logprobs": logprobs, "finish_reason": self.finish_reason}
            response = {**head, "object": "chat.completion", "choices": [choice]}
        if self.usage:
            response["usage"] = self.usage
        return response


def replay_chunks(endpoint: Endpoint, response: dict[str, Any], include_usage: bool) -> Iterator[dict[str, Any]]:
    """A complete response as the chunks a streaming upstream would have sent (used for cache hits)."""
    head = {key: response.get(key) for key in ("id", "created", "model")}
    choice = (response.get("choices") or [{}])[0]
    finish = choice.get("finish_reason") or "stop"
    if endpoint == "completions":
        kind = "text_completion"
        for piece in _REPLAY_PIECE.findall(choice.get("text") or ""):
            yield {**head, "object": kind, "choices": [{"index": 0, "text": piece, "finish_reason": None}]}
        yield {**head, "object": kind, "choices": [{"index": 0, "text": "", "finish_reason": finish}]}
    else:
        kind = "chat.completion.chunk"
        message = choice.get("message") or {}
        yield {**head, "object": kind, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        for piece in _REPLAY_PIECE.findall(message.get("content") or ""):
            yield {**head, "object": kind, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
        for index, call in enumerate(message.get("tool_calls") or ()):
            delta = {"tool_calls": [{"index": index, **call}]}
            yield {**head, "object": kind, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        yield {**head, "object": kind, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
    if include_usage and response.get("usage"):
        yield {**head, "object": kind, "choices": [], "usage": response["usage"]}


def strip_hidden(chunk: dict[str, Any], keep_logprobs: bool, keep_usage: bool) -> dict[str, Any] | None:
    """Remove what the gateway asked the upstream for but the client did not; None when nothing is left to send."""
    if not keep_usage and "usage" in chunk:
        if chunk["usage"] is not None and not chunk.get("choices"):
            return None
        chunk = {key: value for key, value in chunk.items() if key != "usage"}
    if not keep_logprobs:
        choices = chunk.get("choices") or ()
        if any(choice.get("logprobs") is not None for choice in choices):
            chunk = {**chunk, "choices": [{**choice, "logprobs": None} for choice in choices]}
    return chunk
