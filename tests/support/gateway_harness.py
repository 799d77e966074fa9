"""Test factories for the gateway: configs from a few overrides, and a gateway served on a loopback port, in this
process or as its own `neuroscale gateway` process."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from neuroscale.gateway.app import build_app
from neuroscale.gateway.config import GatewayConfig
from neuroscale.gateway.metrics import GatewayMetrics
from neuroscale.gateway.upstreams.base import Upstream
from tests.support.stub_upstream import serve_on_loopback


def openai_tier(name: str, url: str, **overrides: Any) -> dict[str, Any]:
    return {"kind": "openai", "name": name, "url": url, "model": f"{name}-model", **overrides}


def make_config(tiers: list[dict[str, Any]], **overrides: Any) -> GatewayConfig:
    escalation = {"stream_inspect_tokens": 4, **overrides.pop("escalation", {})}
    return GatewayConfig.model_validate(
        {"model_name": "cascade", "tiers": tiers, "escalation": escalation, "host": "127.0.0.1", "port": 0, **overrides}
    )


@dataclass
class RunningGateway:
    url: str
    app: web.Application
    metrics: GatewayMetrics

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def metric(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@asynccontextmanager
async def serve_gateway(
    config: GatewayConfig, *, upstreams: Mapping[str, Upstream] | None = None, cache: Any = None
) -> AsyncIterator[RunningGateway]:
    metrics = GatewayMetrics()
    app = build_app(config, upstreams=upstreams, cache=cache, metrics=metrics)
    runner, port = await serve_on_loopback(app)
    try:
        yield RunningGateway(f"http://127.0.0.1:{port}", app, metrics)
    finally:
        await runner.cleanup()


ROOT = Path(__file__).resolve().parents[2]


@dataclass
class GatewayProcess:
    url: str
    process: subprocess.Popen[bytes]


@asynccontextmanager
async def gateway_process(config: GatewayConfig) -> AsyncIterator[GatewayProcess]:
    """`python -m neuroscale gateway` on a free loopback port, ready when this yields; terminated afterwards."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="neuroscale-gateway-") as workdir:
        path = Path(workdir) / "gateway.json"
        path.write_text(json.dumps({**config.model_dump(mode="json"), "port": port}))
        process = subprocess.Popen([sys.executable, "-m", "neuroscale", "gateway", "--config", str(path)], cwd=ROOT,
                                   env={**os.environ, "PYTHONPATH": str(ROOT / "operator")},
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        running = GatewayProcess(f"http://127.0.0.1:{port}", process)
        try:
            await _wait_ready(running)
            yield running
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=30)


async def _wait_ready(gateway: GatewayProcess) -> None:
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if gateway.process.poll() is not None:
                raise RuntimeError(f"the gateway process exited with {gateway.process.returncode}")
            try:
                async with http.get(gateway.url + "/readyz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the gateway process did not become ready")
