"""An OpenAI-compatible stub engine on a real loopback socket: chat and completions, streaming, log-probs,
usage, and configurable latency, HTTP errors, refusals, empty answers and broken streams.

    async with StubUpstream("small", answer="Paris.") as stub:
        stub.base_url  # http://127.0.0.1:PORT/v1
        stub.behaviour.status = 503  # change behaviour between requests
        stub.requests  # bodies received, in order
        stub.usages  # the `usage` of every generated answer, in order

`python -m tests.support.stub_upstream --port N` serves one from its own process (benchmarks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

_PIECES = re.compile(r"\S+\s*")


async def serve_on_loopback(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve `app` on 127.0.0.1 at `port` (0: a free one); the caller cleans up the runner."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]


@dataclass
class Behaviour:
    answer: str = "The capital of France is Paris."
    status: int = 200
    delay_seconds: float = 0.0
    chunk_delay_seconds: float = 0.0
    logprob: float = -0.05
    # Close the connection after this many content chunks, without [DONE].
    break_after_chunks: int | None = None
    # Send an {"error": ...} event after this many content chunks.
    error_after_chunks: int | None = None
    finish_reason: str = "stop"
    # Sent verbatim instead of a generated answer: the whole body of a non-streamed answer, or the data payloads of
    # a stream (each as one `data:` event, then [DONE]).
    raw_body: bytes | None = None
    # Send raw_body chunked (no Content-Length), in pieces of this many bytes.
    raw_body_piece: int | None = None
    raw_events: list[str] | None = None
    # The body of a non-200 answer, verbatim, instead of an OpenAI error object.
    error_body: bytes | None = None
    # Extra headers on every answer (e.g. Retry-After with status 429).
    headers: dict[str, str] = field(default_factory=dict)


class StubUpstream:
    def __init__(self, name: str = "stub", **behaviour: Any) -> None:
        self.name = name
        self.behaviour = Behaviour(**behaviour)
        self.requests: list[dict[str, Any]] = []
        self.usages: list[dict[str, int]] = []
        self.disconnects = 0
        # Requests being answered now, and the most at once (the routing tests check the load bound with it).
        self.in_flight = 0
        self.max_in_flight = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/completions", self._completions)
        app.router.add_get("/v1/models", self._models)
        return app

    async def start(self, port: int = 0) -> StubUpstream:
        """Listen on `port` (0: a free one); a stopped stub can start again on its old port, as a woken replica
        comes back behind the same Service address."""
        self._runner, self.port = await serve_on_loopback(self.app(), port)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> StubUpstream:
        return await self.start()

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.name, "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "chat")

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "completions")

    async def _serve(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request, endpoint)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request, endpoint: str) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        b = self.behaviour
        if b.delay_seconds:
            await asyncio.sleep(b.delay_seconds)
        if b.status != 200:
            if b.error_body is not None:
                return web.Response(body=b.error_body, status=b.status, headers=b.headers)
            error = {"message": f"{self.name} is failing with {b.status}", "type": "stub_error", "param": None, "code": None}
            return web.json_response({"error": error}, status=b.status, headers=b.headers)
        if b.raw_events is not None and body.get("stream"):
            return await self._raw_stream(request, b.raw_events)
        if b.raw_body is not None and b.raw_body_piece:
            response = web.StreamResponse(headers={"Content-Type": "application/json", **b.headers})
            await response.prepare(request)
            try:
                for start in range(0, len(b.raw_body), b.raw_body_piece):
                    await response.write(b.raw_body[start:start + b.raw_body_piece])
            except ConnectionError:
                self.disconnects += 1
            return response
        if b.raw_body is not None:
            return web.Response(body=b.raw_body, content_type="application/json", headers=b.headers)
        pieces = _PIECES.findall(b.answer)
        prompt_chars = len(json.dumps(body.get("messages") or body.get("prompt") or ""))
        usage = {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(pieces),
                 "total_tokens": prompt_chars // 4 + len(pieces)}
        self.usages.append(usage)
        head = {"id": f"{self.name}-{len(self.requests)}", "created": int(time.time()), "model": body.get("model")}
        if body.get("stream"):
            return await self._stream(request, endpoint, body, pieces, head, usage)
        if endpoint == "chat":
            logprobs = {"content": [{"token": p, "logprob": b.logprob, "bytes": None, "top_logprobs": []} for p in pieces]}
            choice = {"index": 0, "message": {"role": "assistant", "content": b.answer},
                      "logprobs": logprobs if body.get("logprobs") else None, "finish_reason": b.finish_reason}
            return web.json_response({**head, "object": "chat.completion", "choices": [choice], "usage": usage},
                                     headers=b.headers)
        logprobs = {"tokens": pieces, "token_logprobs": [b.logprob] * len(pieces)}
        choice = {"index": 0, "text": b.answer, "logprobs": logprobs if body.get("logprobs") else None,
                  "finish_reason": b.finish_reason}
        return web.json_response({**head, "object": "text_completion", "choices": [choice], "usage": usage})

    async def _raw_stream(self, request: web.Request, payloads: list[str]) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **self.behaviour.headers})
        await response.prepare(request)
        try:
            for payload in payloads:
                await response.write(b"data: " + payload.encode("utf-8", "surrogatepass") + b"\n\n")
            await response.write(b"data: [DONE]\n\n")
        except ConnectionError:
            self.disconnects += 1
        return response

    async def _stream(
        self, request: web.Request, endpoint: str, body: dict[str, Any], pieces: list[str], head: dict[str, Any],
        usage: dict[str, Any],
    ) -> web.StreamResponse:
        b = self.behaviour
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", **b.headers})
        await response.prepare(request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        kind = "chat.completion.chunk" if endpoint == "chat" else "text_completion"
        extra = {"usage": None} if include_usage else {}

        def chunk(piece: str | None, finish: str | None) -> dict[str, Any]:
            if endpoint == "chat":
                delta = {"role": "assistant", "content": ""} if piece is None and finish is None else (
                    {"content": piece} if piece is not None else {})
                logprobs = None
                if body.get("logprobs") and piece:
                    logprobs = {"content": [{"token": piece, "logprob": b.logprob, "bytes": None, "top_logprobs": []}]}
                choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
            else:
                logprobs = {"tokens": [piece], "token_logprobs": [b.logprob]} if body.get("logprobs") and piece else None
                choice = {"index": 0, "text": piece or "", "logprobs": logprobs, "finish_reason": finish}
            return {**head, "object": kind, "choices": [choice], **extra}

        def event(data: dict[str, Any]) -> bytes:
            return b"data: " + json.dumps(data).encode() + b"\n\n"

        try:
            if endpoint == "chat":
                await response.write(event(chunk(None, None)))
            for index, piece in enumerate(pieces):
                if b.break_after_chunks is not None and index >= b.break_after_chunks:
                    request.transport.close()  # type: ignore[union-attr]
                    return response
                if b.error_after_chunks is not None and index >= b.error_after_chunks:
                    await response.write(event({"error": {"message": "engine crashed", "type": "server_error"}}))
                    return response
                if b.chunk_delay_seconds:
                    await asyncio.sleep(b.chunk_delay_seconds)
                await response.write(event(chunk(piece, None)))
            await response.write(event(chunk(None, b.finish_reason)))
            if include_usage:
                await response.write(event({**head, "object": kind, "choices": [], "usage": usage}))
            await response.write(b"data: [DONE]\n\n")
        except ConnectionError:
            self.disconnects += 1
        return response


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve an OpenAI-compatible stub engine on loopback.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1", help="listen address (0.0.0.0: every loopback address)")
    parser.add_argument("--answer", default=Behaviour.answer)
    args = parser.parse_args()
    web.run_app(StubUpstream("stub", answer=args.answer).app(), host=args.host, port=args.port,
                access_log=None, print=None)


if __name__ == "__main__":
    main()
