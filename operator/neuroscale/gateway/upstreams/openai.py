"""OpenAI-compatible upstream (vLLM, TGI, any /v1 API) over a shared aiohttp client session."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator
from typing import Any

import aiohttp

from neuroscale.gateway.adapters import upstream_model
from neuroscale.gateway.config import Limits, OpenAITier
from neuroscale.gateway.protocol import Endpoint, loads_bounded
from neuroscale.gateway.streaming import SSEDecoder, StreamTooLarge
from neuroscale.gateway.upstreams.base import UpstreamError, parse_retry_after

_PATHS: dict[Endpoint, str] = {"chat": "/chat/completions", "completions": "/completions"}
# Statuses that say the request itself is wrong: another tier would refuse it too, so the client gets it back. Every
# other 4xx is the gateway's problem, not the client's (401/403: the tier's API key; 404: the tier's URL or model;
# 408/409/429: try elsewhere or later) and counts as a tier failure.
_CLIENT_FAULTS = frozenset({400, 413, 422})


class OpenAIUpstream:
    def __init__(self, tier: OpenAITier, session: aiohttp.ClientSession, limits: Limits | None = None) -> None:
        self.name = tier.name
        self._tier = tier
        self._session = session
        self._limits = limits or Limits()
        self._base = tier.url.rstrip("/")
        self._timeout = aiohttp.ClientTimeout(total=tier.timeouts.total_seconds, sock_connect=tier.timeouts.connect_seconds)
        self._headers = {"Content-Type": "application/json"}
        if tier.api_key_env:
            key = os.environ.get(tier.api_key_env)
            if not key:
                raise ValueError(f"tier {tier.name}: environment variable {tier.api_key_env} (its API key) is not set")
            self._headers["Authorization"] = f"Bearer {key}"

    def unsupported_parameter(self, endpoint: Endpoint, body: dict[str, Any]) -> str | None:
        return None

    async def complete(self, endpoint: Endpoint, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._post(endpoint, body) as response:
                await self._raise_for_status(response)
                answer = loads_bounded(await self._read_answer(response))
        except TimeoutError:
            raise UpstreamError("timeout", f"tier {self.name} timed out") from None
        except (aiohttp.ClientError, ValueError) as error:
            raise UpstreamError("error", f"tier {self.name}: {type(error).__name__}: {error}") from None
        if not isinstance(answer, dict) or not isinstance(answer.get("choices"), list):
            raise UpstreamError("error", f"tier {self.name} answered without choices")
        return answer

    async def stream(self, endpoint: Endpoint, body: dict[str, Any]) -> AsyncGenerator[dict[str, Any], None]:
        decoder = SSEDecoder(self._limits.max_event_bytes)
        budget = self._limits.max_response_bytes
        try:
            async with self._post(endpoint, body) as response:
                await self._raise_for_status(response)
                async for raw in response.content.iter_any():
                    budget -= len(raw)
                    if budget < 0:
                        raise StreamTooLarge(f"the stream is larger than {self._limits.max_response_bytes} bytes")
                    for payload in decoder.feed(raw):
                        if payload == "[DONE]":
                            return
                        yield self._chunk(payload)
                for payload in decoder.flush():
                    if payload == "[DONE]":
                        return
                    yield self._chunk(payload)
        except TimeoutError:
            raise UpstreamError("timeout", f"tier {self.name} timed out mid-stream") from None
        except (aiohttp.ClientError, ValueError) as error:  # ValueError: StreamTooLarge, UnicodeDecodeError
            raise UpstreamError("error", f"tier {self.name}: {type(error).__name__}: {error}") from None
        raise UpstreamError("error", f"tier {self.name} ended its stream without [DONE]")

    def _chunk(self, payload: str) -> dict[str, Any]:
        try:
            chunk = loads_bounded(payload)
        except ValueError:
            raise UpstreamError("error", f"tier {self.name} sent a malformed stream event") from None
        if not isinstance(chunk, dict):
            raise UpstreamError("error", f"tier {self.name} sent a malformed stream event")
        if "error" in chunk:
            raise UpstreamError("error", f"tier {self.name} failed mid-stream: {chunk['error']}")
        return chunk

    def _post(self, endpoint: Endpoint, body: dict[str, Any]) -> Any:
        data = json.dumps({**body, "model": upstream_model(self._tier, body.get("model", ""))})
        return self._session.post(self._base + _PATHS[endpoint], data=data, headers=self._headers, timeout=self._timeout)

    async def _read_answer(self, response: aiohttp.ClientResponse) -> bytes:
        """The whole body of a non-streamed answer, or StreamTooLarge as soon as it passes the bound (the
        Content-Length is checked first; a chunked body is counted as it arrives)."""
        limit = self._limits.max_response_bytes
        if response.content_length is not None and response.content_length > limit:
            raise StreamTooLarge(f"the answer is {response.content_length} bytes, more than {limit}")
        body = await _read_at_most(response, limit + 1)
        if len(body) > limit:
            raise StreamTooLarge(f"the answer is larger than {limit} bytes")
        return body

    async def _raise_for_status(self, response: aiohttp.ClientResponse) -> None:
        if response.status == 200:
            return
        text = (await _read_at_most(response, self._limits.max_error_body_bytes)).decode(errors="replace")
        try:
            body = loads_bounded(text)
        except ValueError:
            body = None
        detail = text[:300]
        if response.status in _CLIENT_FAULTS:
            raise UpstreamError("rejected", f"tier {self.name} rejected the request: {detail}", response.status, body)
        raise UpstreamError(
            "error", f"tier {self.name} answered HTTP {response.status}: {detail}", response.status,
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )

    async def close(self) -> None:
        """The session is shared and closed by its owner."""


async def _read_at_most(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """Up to `limit` bytes of a body; whatever follows is left unread (the connection is then not reused)."""
    body = bytearray()
    while len(body) < limit:
        piece = await response.content.read(min(1 << 16, limit - len(body)))
        if not piece:
            break
        body += piece
    return bytes(body)
