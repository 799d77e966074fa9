"""Test factories for the gateway: configs from a few overrides, and a gateway served on a loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

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
