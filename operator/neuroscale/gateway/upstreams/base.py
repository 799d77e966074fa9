"""The narrow interface every tier's upstream implements, and the error it raises."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

from neuroscale.gateway.protocol import Endpoint

FailureKind = Literal["timeout", "error", "rejected"]


class UpstreamError(Exception):
    """A tier failed: `timeout`, `error` (connection, 429, 5xx, malformed answer) or `rejected` (a 4xx the client
    caused, which escalation cannot fix and is passed back to the client).

    `message` is for the log and may hold anything the upstream said; clients never see it. `tier` is filled in by
    the cascade."""

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        status: int | None = None,
        body: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status
        self.body = body
        self.retry_after = retry_after
        self.tier: str | None = None

    @property
    def rate_limited(self) -> bool:
        return self.status == 429


# Longest wait passed on to clients; a larger or unreadable Retry-After is dropped rather than trusted.
MAX_RETRY_AFTER_SECONDS = 3600


def parse_retry_after(value: str | None, now: float | None = None) -> int | None:
    """Whole seconds from a Retry-After header (delay-seconds or an HTTP date), or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = int(value)
    else:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment is None or moment.tzinfo is None:
            return None
        seconds = max(0, math.ceil(moment.timestamp() - (time.time() if now is None else now)))
    return seconds if seconds <= MAX_RETRY_AFTER_SECONDS else None


class Upstream(Protocol):
    """One tier. Requests and answers are OpenAI-shaped whatever the tier speaks."""

    name: str

    def unsupported_parameter(self, endpoint: Endpoint, body: dict[str, Any]) -> str | None:
        """The first request parameter this tier cannot honour, or None."""

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        """A complete OpenAI response; raises UpstreamError."""

    def stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        """OpenAI chunks as they arrive; raises UpstreamError. Closing the iterator releases the connection."""

    async def close(self) -> None:
        """Release connections and threads."""
