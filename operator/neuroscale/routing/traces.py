"""Prefix-trace reader: requests with their arrival, lengths and prompt block hashes (the Mooncake format).

One JSON object a line: `timestamp` (ms from the start), `input_length` and `output_length` (tokens), `hash_ids`
(one id per prompt block of `block_tokens` tokens, 512 in Mooncake's traces; equal ids mean equal prefixes up to and
including that block). Any trace written in this format drops in. Conversations are not labelled in the format;
`sessions` recovers them the way a client's session key would: a request whose prompt starts with an earlier
request's prompt, less that prompt's last block (partial, so the next turn's text fills it and changes its hash),
continues that request's conversation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MAX_TRACE_BYTES = 256 * 1024 * 1024
MAX_BLOCKS_PER_REQUEST = 1 << 16  # 33 M tokens at 512 a block, far past any context window


class PrefixTraceError(ValueError):
    """The trace cannot be read; the message names the file, the line and what is wrong."""


@dataclass(frozen=True)
class TraceRequest:
    arrival_s: float
    input_tokens: int
    output_tokens: int
    blocks: tuple[int, ...]


def load_prefix_trace(path: str | Path) -> list[TraceRequest]:
    """Every request of a Mooncake-format trace, in arrival order (a stable sort keeps the file's order of ties)."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise PrefixTraceError(f"cannot read trace {path}: {error.strerror or error}") from None
    if size > MAX_TRACE_BYTES:
        raise PrefixTraceError(f"{path}: {size} bytes, more than the {MAX_TRACE_BYTES} this reader accepts")
    requests = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                requests.append(_request(line, f"{path}:{number}"))
    if not requests:
        raise PrefixTraceError(f"{path}: no requests")
    return sorted(requests, key=lambda request: request.arrival_s)


def _request(line: str, where: str) -> TraceRequest:
    try:
        row = json.loads(line)
        blocks = row["hash_ids"]
        request = TraceRequest(float(row["timestamp"]) / 1000.0, int(row["input_length"]), int(row["output_length"]),
                               tuple(int(block) for block in blocks))
    except (ValueError, KeyError, TypeError) as error:
        raise PrefixTraceError(
            f"{where}: expected {{timestamp, input_length, output_length, hash_ids}} ({type(error).__name__}: {error})"
        ) from None
    if request.arrival_s < 0 or request.input_tokens < 0 or request.output_tokens < 0:
        raise PrefixTraceError(f"{where}: timestamp and lengths must not be negative")
    if len(request.blocks) > MAX_BLOCKS_PER_REQUEST:
        raise PrefixTraceError(f"{where}: {len(request.blocks)} blocks, more than {MAX_BLOCKS_PER_REQUEST}")
    return request


def sessions(requests: list[TraceRequest]) -> list[int]:
    """A conversation number per request: the conversation of the latest earlier request whose prompt (whole, or
    less its last block) this one starts with, the longest such match first; else a new conversation. One block
    says too little (it is often a system prompt every conversation shares), so only prefixes of two blocks or more
    count, and one that two conversations end on identifies neither and is dropped."""
    by_prompt: dict[tuple[int, ...], int] = {}
    ambiguous: set[tuple[int, ...]] = set()
    labels: list[int] = []
    conversations = 0
    for request in requests:
        label = None
        for length in range(len(request.blocks), 0, -1):
            label = by_prompt.get(request.blocks[:length])
            if label is not None:
                break
        if label is None:
            label, conversations = conversations, conversations + 1
        labels.append(label)
        for prefix in (request.blocks, request.blocks[:-1]):
            if len(prefix) < 2 or prefix in ambiguous:
                continue
            if by_prompt.setdefault(prefix, label) != label:
                ambiguous.add(prefix)
                del by_prompt[prefix]
    return labels
