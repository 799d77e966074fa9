"""A reverse proxy in front of the real API server that answers chosen requests with a fault instead.

Everything else (watches included, streamed) goes through to the real server with the admin's client certificate,
so the operator meets real semantics everywhere except where a test injects a 409, 429 or 500. The operator talks
plain HTTP to the proxy on loopback through the kubeconfig `write_kubeconfig` writes.
"""

from __future__ import annotations

import contextlib
import json
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding", "host"}


@dataclass
class Fault:
    """Answer the next `times` requests matching `method` and the `path` pattern with `status`; with
    `watch_error`, answer 200 and stream that in-stream ERROR event instead (what a watch gets when the server fails
    mid-stream)."""

    method: str
    path: str
    status: int
    times: int = 1
    headers: dict[str, str] = field(default_factory=dict)
    watch_error: bool = False
    hits: int = 0

    def matches(self, request: web.Request) -> bool:
        return (self.hits < self.times and request.method == self.method
                and re.search(self.path, request.path_qs) is not None)


@dataclass
class FaultProxy:
    upstream: str
    ssl_context: ssl.SSLContext
    faults: list[Fault] = field(default_factory=list)
    url: str = ""

    def inject(self, fault: Fault) -> Fault:
        self.faults.append(fault)
        return fault

    async def handle(self, request: web.Request) -> web.StreamResponse:
        for fault in self.faults:
            if fault.matches(request):
                fault.hits += 1
                reason = {409: "Conflict", 429: "TooManyRequests", 500: "InternalError"}.get(fault.status, "Fault")
                status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": fault.status,
                          "reason": reason, "message": f"injected {fault.status} by the test"}
                if fault.watch_error:
                    return web.Response(text=json.dumps({"type": "ERROR", "object": status}) + "\n",
                                        content_type="application/json")
                return web.json_response(status, status=fault.status, headers=fault.headers)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_BY_HOP | {"authorization"}}
        body = await request.read()
        async with self.session.request(request.method, f"{self.upstream}{request.path_qs}", headers=headers,
                                        data=body or None, ssl=self.ssl_context, timeout=aiohttp.ClientTimeout(None)
                                        ) as upstream:
            response = web.StreamResponse(status=upstream.status, headers={
                k: v for k, v in upstream.headers.items() if k.lower() not in HOP_BY_HOP})
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():  # watches stream line by line
                    await response.write(chunk)
                await response.write_eof()
            except (ConnectionResetError, aiohttp.ClientConnectionResetError):
                pass  # the client went away mid-stream (a watch closed on shutdown): nothing left to relay
            return response

    def write_kubeconfig(self, path: Path) -> Path:
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "proxy",
            "clusters": [{"name": "proxy", "cluster": {"server": self.url}}],
            "users": [{"name": "proxy", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
        }))
        return path


@contextlib.asynccontextmanager
async def fault_proxy(plane: Any) -> AsyncIterator[FaultProxy]:
    """A proxy to `plane`'s API server on a free loopback port, authenticating as the admin."""
    context = ssl.create_default_context(cafile=str(plane.certs.ca))
    context.load_cert_chain(plane.certs.path("admin.crt"), plane.certs.path("admin.key"))
    proxy = FaultProxy(upstream=plane.url, ssl_context=context)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    async with aiohttp.ClientSession() as session:
        proxy.session = session  # type: ignore[attr-defined]
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        proxy.url = f"http://127.0.0.1:{port}"
        try:
            yield proxy
        finally:
            await runner.cleanup()
