"""The routing key of a request: its session header, or the opening of its prompt.

The opening is every message up to and including the first user message, cut to `prefix_chars` characters (one
512-token block at ~4 characters a token). It is the same on every turn of a conversation, since a chat client
resends the history, and the same for every question about one shared document or system prompt plus opening
question, whatever follows; a later block would split a conversation whose first turn is short. A raw completions
prompt is cut the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text identifies a prefix cheaply
        return "".join(part.get("text", "") for part in content if isinstance(part, dict)
                       and isinstance(part.get("text"), str))
    return ""


def prompt_opening(endpoint: str, body: Mapping[str, Any], limit: int) -> str:
    """The first `limit` characters of the request's opening (see the module docstring)."""
    if endpoint == "chat":
        pieces, size = [], 0
        for message in body.get("messages") or ():
            if not isinstance(message, dict):
                continue
            piece = f"{message.get('role')}\x1f{_text(message.get('content'))}\x1e"
            pieces.append(piece)
            size += len(piece)
            if message.get("role") == "user" or size >= limit:
                break
        return "".join(pieces)[:limit]
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = prompt[0] if prompt and isinstance(prompt[0], str) else ",".join(map(str, prompt[:limit]))
    return str(prompt or "")[:limit]


def routing_key(policy: str, endpoint: str, body: Mapping[str, Any], session: str | None, limit: int) -> bytes | None:
    """What a request is hashed on under `policy`; None means least-loaded."""
    if session:
        return b"session\x00" + session.encode()
    if policy == "prefix":
        return b"prefix\x00" + prompt_opening(endpoint, body, limit).encode()
    return None
