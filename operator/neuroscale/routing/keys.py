"""The routing key of a request: its session header, or the shortest opening of its prompt that is not hot.

A prompt's openings are nested prefixes, shortest first. For a chat request the first is every message up to and
including the first user message, the next runs to the second user message, and so on; each is cut to
`prefix_chars` characters per level (one 512-token block at ~4 characters a token). The first opening is the same on
every turn of a conversation, since a chat client resends the history, and the same for every question about one
shared document behind one system prompt. A raw completions prompt opens in blocks of `prefix_chars`.

An opening that carries more than one replica's share of recent requests (`HotPrefixes`: every conversation of an
application starting with the same system prompt and greeting, every request of a trace sharing its first block)
cannot stay on one replica, so it is no key: the next, longer opening is. Counting is this gateway's own, over
about the last thousand requests; gateways that see the same traffic come to the same counts, as they do to the
same mean prompt length.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

from neuroscale.routing.balancer import MEAN_HORIZON_REQUESTS

MAX_LEVELS = 8
# Openings remembered (8-byte digests with a share and a request number: ~100 bytes each, ~6 MiB at most).
MAX_REMEMBERED = 1 << 16


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: only text identifies a prefix cheaply
        return "".join(part.get("text", "") for part in content if isinstance(part, dict)
                       and isinstance(part.get("text"), str))
    return ""


def prompt_openings(endpoint: str, body: Mapping[str, Any], limit: int) -> list[str]:
    """The request's nested openings, shortest first (see the module docstring); at least one, at most MAX_LEVELS."""
    if endpoint == "chat":
        openings, pieces = [], []
        for message in body.get("messages") or ():
            if not isinstance(message, dict):
                continue
            pieces.append(f"{message.get('role')}\x1f{_text(message.get('content'))[:limit]}\x1e")
            if message.get("role") == "user":
                openings.append("".join(pieces)[:limit * (len(openings) + 1)])
                if len(openings) == MAX_LEVELS:
                    break
        return openings or ["".join(pieces)[:limit]]
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = prompt[0] if prompt and isinstance(prompt[0], str) else ",".join(map(str, prompt[:limit]))
    text = str(prompt or "")
    return [text[:limit * level] for level in range(1, min(MAX_LEVELS, max(1, -(-len(text) // limit))) + 1)]


def block_openings(blocks: Sequence[int], max_levels: int = MAX_LEVELS) -> list[bytes]:
    """A trace request's openings: its first block, first two, ... of its complete blocks (the last block of a
    prompt is partial, so the next turn, which fills it, would not share it)."""
    complete = blocks[:-1] or blocks[:1]
    return [",".join(map(str, complete[:depth])).encode() for depth in range(1, min(max_levels, len(complete)) + 1)]


class HotPrefixes:
    """Each opening's share of recent requests, as an exponentially weighted count; picks the key among openings."""

    def __init__(self, horizon: int = MEAN_HORIZON_REQUESTS, remembered: int = MAX_REMEMBERED) -> None:
        self._weight = 1.0 / horizon
        self._remembered = remembered
        self._seen = 0
        self._shares: OrderedDict[bytes, tuple[float, int]] = OrderedDict()

    def _share(self, digest: bytes) -> float:
        entry = self._shares.get(digest)
        if entry is None:
            return 0.0
        share, seen = entry
        return share * (1.0 - self._weight) ** (self._seen - seen)

    def key(self, openings: Sequence[bytes | str], replicas: int) -> bytes:
        """The shortest opening whose recent share is at most 1 ÷ replicas (the longest when all are hotter), as a
        digest; this request is counted under every opening."""
        self._seen += 1
        chosen, digest = None, b""
        for opening in openings:
            data = opening.encode() if isinstance(opening, str) else opening
            digest = hashlib.blake2b(data, digest_size=8).digest()
            share = self._share(digest)
            if chosen is None and share * max(replicas, 1) <= 1.0:
                chosen = digest
            self._shares[digest] = (share + self._weight, self._seen)
            self._shares.move_to_end(digest)
        while len(self._shares) > self._remembered:
            self._shares.popitem(last=False)
        return chosen if chosen is not None else digest


def routing_key(policy: str, session: str | None, openings: Sequence[bytes | str], hot: HotPrefixes,
                replicas: int) -> bytes | None:
    """What a request is hashed on under `policy`: the session header when sent, else (prefix policy) the key
    opening; None means least-loaded."""
    if session:
        return b"session\x00" + session.encode()
    if policy == "prefix":
        return b"prefix\x00" + hot.key(openings, replicas)
    return None
