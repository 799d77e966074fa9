"""Scale to zero and back on a real API server: the real gateway's demand, through a real Prometheus, wakes a
minReplicas-0 ModelDeployment, and an idle one goes back to zero.

The gateway runs in the test (a cascade of the ModelDeployment's tier, whose address refuses connections as a
Service without ready endpoints does, and a stub bridge tier); Prometheus scrapes it labelled as a gateway pod in
the namespace, and one vLLM exporter per Running model pod, as a PodMonitor would. The operator runs with a 1 s
control interval and a 5 s rate window.

Covers: a minReplicas-0 ModelDeployment created at zero, Ready=False ScaledToZero with the message naming the
cascade; requests to the cascade answered by the bridge while the deployment is cold; the operator scaling the
Deployment 0→1 on that demand (a ScaledUp event saying why) and kwok running the pod; once the pod is idle (no
tokens, no queue, no gateway demand) for the idle period, 1→0 (a ScaledDown event), and no request lost throughout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from neuroscale.runtime import OperatorConfig
from tests.e2e.cluster import Apis, eventually, running_operator
from tests.e2e.test_autoscaling_e2e import Fleet
from tests.support.factories import make_model_deployment
from tests.support.gateway_harness import make_config, openai_tier, serve_gateway
from tests.support.prometheus_server import PrometheusServer, ScrapeTarget, free_loopback_port, pod_target
from tests.support.stub_upstream import StubUpstream

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

GROUP, VERSION, PLURAL = "neuroscale.io", "v1alpha1", "modeldeployments"
NAME = "llama"


class FleetAndGateway(Fleet):
    """The autoscaling test's engine fleet, with the cascade gateway scraped next to the pods."""

    gateway: ScrapeTarget | None = None

    def sync(self) -> None:
        original = self.prometheus.set_targets

        def with_gateway(targets: Any, wait: bool = True) -> None:
            original((*targets, *((self.gateway,) if self.gateway else ())), wait=wait)
        self.prometheus.set_targets = with_gateway  # type: ignore[method-assign]
        try:
            super().sync()
        finally:
            self.prometheus.set_targets = original  # type: ignore[method-assign]


def condition(md: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (md.get("status") or {}).get("conditions", []) if c["type"] == kind), {})


async def test_gateway_demand_wakes_a_scaled_to_zero_deployment_and_idle_puts_it_back(
    control_plane: Any, api: Any, namespace: str, prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    if control_plane is None:
        pytest.skip("needs pods that run on an inf2.48xlarge node: the suite's kwok nodes")
    apis = Apis(api, namespace)
    prometheus = prometheus_factory()
    config = OperatorConfig(resync_seconds=5.0, autoscale_interval_seconds=1.0, prometheus_url=prometheus.url,
                            prometheus_rate_window="5s")
    body = make_model_deployment(NAME, namespace, accelerator={"instanceType": "inf2.48xlarge"},
                                 autoscaling={"minReplicas": 0, "maxReplicas": 2, "coldStartSeconds": 0,
                                              "predictive": False})
    body["metadata"] = {"name": NAME, "namespace": namespace}
    cold_port = free_loopback_port()  # the model's Service while it has no ready endpoint: connections refused
    small = openai_tier("small", f"http://127.0.0.1:{cold_port}/v1", wake={
        "model_deployment": NAME, "cold_start_seconds": 600, "hold_seconds": 1.0, "probe_interval_seconds": 0.5})

    def md() -> dict[str, Any]:
        return apis.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, NAME)

    def replicas() -> int:
        return apis.apps.read_namespaced_deployment(NAME, namespace).spec.replicas

    def events(reason: str) -> list[str]:
        selector = f"involvedObject.name={NAME},involvedObject.kind=ModelDeployment,reason={reason}"
        return [e.message for e in apis.core.list_namespaced_event(namespace, field_selector=selector).items]

    async with StubUpstream("large", answer="Paris, large says.") as bridge:
        gateway_config = make_config([small, openai_tier("large", bridge.base_url)])
        async with serve_gateway(gateway_config) as gateway, aiohttp.ClientSession() as http, \
                running_operator(namespace, config=config):
            await asyncio.to_thread(apis.custom.create_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                                    body)
            created = await eventually(lambda: (m := md()).get("status", {}).get("selector") and m, timeout=60)
            fleet = FleetAndGateway(apis.core, namespace, created["status"]["selector"], prometheus)
            fleet.gateway = pod_target(gateway.url.removeprefix("http://"), namespace, "chat-gateway-7d9f-abcde")
            async with fleet.running():
                ready = await eventually(lambda: (c := condition(md(), "Ready")).get("reason") == "ScaledToZero" and c,
                                         timeout=30)
                assert "InferenceCascade" in ready["message"] and replicas() == 0
                await eventually(lambda: condition(md(), "Autoscaling").get("status") == "True", timeout=30)

                answered: list[tuple[int, str | None, str | None]] = []

                async def ask() -> None:
                    async with http.post(gateway.base_url + "/chat/completions", json={
                            "model": "cascade", "messages": [{"role": "user", "content": "Capital of France?"}]}) as r:
                        answered.append((r.status, r.headers.get("x-neuroscale-tier"),
                                         r.headers.get("x-neuroscale-escalations")))

                for _ in range(5):
                    await ask()
                    await asyncio.sleep(0.3)
                assert answered == [(200, "large", "small:cold")] * 5, answered
                await eventually(lambda: replicas() == 1 and apis.core.list_namespaced_pod(
                    namespace, label_selector=created["status"]["selector"]).items, timeout=30)
                scaled_up = await eventually(lambda: events("ScaledUp"), timeout=30)
                assert any("0→1" in m and "cascade gateway" in m for m in scaled_up), scaled_up

                # Idle: the pod reports no tokens and no queue, the gateway no more demand. With a 0 s cold start the
                # idle period is the 5 s rate window; the deployment goes back to zero and says so.
                await eventually(lambda: replicas() == 0, timeout=60)
                scaled_down = await eventually(lambda: events("ScaledDown"), timeout=30)
                assert any("→0: idle for" in m for m in scaled_down), scaled_down
                await eventually(lambda: condition(md(), "Ready").get("reason") == "ScaledToZero", timeout=30)
                for _ in range(2):
                    await ask()
                assert all(status == 200 for status, _, _ in answered) and len(answered) == 7
