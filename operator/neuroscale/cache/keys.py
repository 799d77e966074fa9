"""Canonical request forms and the cache keys derived from them (pure: no I/O, no clock)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

# Bump when the canonical form changes so old entries are never read under a new meaning.
KEY_VERSION = "v1"

# Transport-only fields: they change how an answer is delivered, never what it says.
_TRANSPORT_FIELDS = frozenset({"stream", "stream_options"})


@dataclass(frozen=True)
class RequestKeys:
    """Keys for one request within one isolation scope.

    exact:    hash of scope + endpoint + the whole canonical request.
    context:  hash of scope + endpoint + everything except the last user turn (None when the request has no
              trailing plain-text user turn, which disables the semantic path).
    question: the last user turn's text, compared by embedding and verifier.
    scope_tag: a short hash of the scope alone; a shared store groups a scope's keys by it (Redis Cluster hash
              tag), so tenants spread over slots while each tenant's entries stay together.
    """

    exact: str
    context: str | None
    question: str | None
    scope_tag: str = ""


def canonical(value: Any) -> Any:
    """Normalise values that mean the same thing: drop nulls, integral floats to int, text-only content parts to a string."""
    if isinstance(value, dict):
        out = {str(k): canonical(v) for k, v in value.items() if v is not None}
        content = out.get("content")
        if isinstance(content, list) and content and all(_is_text_part(p) for p in content):
            out["content"] = "".join(p["text"] for p in content)
        return out
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def canonical_json(endpoint: str, request: dict[str, Any]) -> str:
    body = {k: v for k, v in request.items() if k not in _TRANSPORT_FIELDS}
    # n=1 is OpenAI's default; writing it or not asks for the same thing.
    if body.get("n") == 1:
        body.pop("n")
    return json.dumps([KEY_VERSION, endpoint, canonical(body)], sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_keys(endpoint: str, request: dict[str, Any], scope: str) -> RequestKeys:
    """Derive the exact and context keys; the scope is hashed into both so no key is shared across tenants."""
    exact = _digest(scope, canonical_json(endpoint, request))
    tag = scope_tag(scope)
    question, rest = split_question(endpoint, request)
    if question is None or rest is None:
        return RequestKeys(exact=exact, context=None, question=None, scope_tag=tag)
    context = _digest(scope, "ctx:" + canonical_json(endpoint, rest))
    return RequestKeys(exact=exact, context=context, question=question, scope_tag=tag)


def scope_tag(scope: str) -> str:
    """16 hex digits naming the scope without revealing it; braces-free, so it can sit inside a hash tag."""
    return _digest(scope, "scope")[:16]


def split_question(endpoint: str, request: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """Separate the last user turn's text from the rest of the request (which must then match exactly)."""
    if endpoint == "completions":
        prompt = request.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return None, None
        return prompt, {**request, "prompt": None}
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return None, None
    last = canonical(messages[-1])
    text = last.get("content")
    if last.get("role") != "user" or not isinstance(text, str) or not text.strip():
        return None, None
    # Keep the user turn's other fields (e.g. name) in the context so they must match too.
    return text, {**request, "messages": [*messages[:-1], {**last, "content": None}]}


def _digest(scope: str, canonical_text: str) -> str:
    h = hashlib.sha256()
    # Length-prefix the scope so no (scope, body) pair can collide with another by shifting bytes across the join.
    scope_bytes = scope.encode("utf-8", "surrogatepass")
    h.update(len(scope_bytes).to_bytes(8, "big"))
    h.update(scope_bytes)
    h.update(canonical_text.encode("utf-8", "surrogatepass"))
    return h.hexdigest()


def _is_text_part(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str) and set(part) <= {"type", "text"}
