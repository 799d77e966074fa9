"""Scale from zero through the real gateway, with a real Prometheus carrying the demand to the autoscaler's decision.

The primary tier is a ModelDeployment scaled to zero: a stub engine whose port is closed, as a Service without ready
endpoints refuses connections. The bridge is a second stub tier. Clients send a steady mix of streamed and
non-streamed requests. The gateway counts the cold requests, Prometheus scrapes it (labelled as a gateway pod), and
the operator's own reader (`MetricsSource.read_gateway_demand`) and 0↔1 decision (`decide_zero`) wake the primary:
the stub starts on its port after a cold start.

Covers: while cold, every request is answered by the bridge (`x-neuroscale-escalations: small:cold`), none waits for
the cold start; the demand reaches Prometheus and the decision wakes the primary; once the gateway's probe sees it
ready, traffic moves back to it; going back to zero moves traffic to the bridge again; across all of it every
request is answered completely (200, the whole text or stream with [DONE]) and none is lost; the gateway's cold
counter equals the requests it bridged; requests held for a wake expected within the hold served by the woken
tier, not the bridge; a demand read with no gateway series, or with Prometheus down, says why
it has no value (never a guessed zero).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiohttp
import pytest

from neuroscale.autoscale.metrics import MetricsSource, PrometheusSettings
from neuroscale.autoscale.zero import ZeroConfig, ZeroInputs, decide_zero
from tests.support.gateway_harness import RunningGateway, make_config, openai_tier, serve_gateway
from tests.support.prometheus_server import PrometheusServer, free_loopback_port, pod_target
from tests.support.stub_upstream import StubUpstream

pytestmark = pytest.mark.slow

NAMESPACE = "ml"
DEPLOYMENT = "llama"
COLD_START_S = 2.0
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


async def ask(http: aiohttp.ClientSession, gateway: RunningGateway, stream: bool) -> dict[str, object]:
    """One request; what came back, checked for completeness by the caller."""
    sent = time.monotonic()
    body = {"model": "cascade", "messages": QUESTION, "stream": stream}
    async with http.post(gateway.base_url + "/chat/completions", json=body) as response:
        text = await response.text()
        outcome: dict[str, object] = {"status": response.status, "tier": response.headers.get("x-neuroscale-tier"),
                                      "escalations": response.headers.get("x-neuroscale-escalations", ""),
                                      "seconds": time.monotonic() - sent, "stream": stream}
    if response.status != 200:
        outcome["content"] = text
    elif stream:
        payloads = [line[6:] for line in text.split("\n") if line.startswith("data: ")]
        outcome["done"] = payloads[-1:] == ["[DONE]"]
        outcome["content"] = "".join(
            (json.loads(p)["choices"][0]["delta"].get("content") or "") for p in payloads[:-1]
            if json.loads(p).get("choices"))
    else:
        outcome["done"] = True
        outcome["content"] = json.loads(text)["choices"][0]["message"]["content"]
    return outcome


async def test_bridge_serves_while_cold_wake_through_prometheus_and_traffic_moves_back(
    tmp_path: Path, large: StubUpstream, http: aiohttp.ClientSession,
) -> None:
    port = free_loopback_port()
    small = StubUpstream("small", answer="Paris, small says.")
    small_tier = openai_tier("small", f"http://127.0.0.1:{port}/v1", wake={
        "model_deployment": DEPLOYMENT, "cold_start_seconds": 600, "hold_seconds": 1.0,
        "probe_interval_seconds": 0.2})
    config = make_config([small_tier, openai_tier("large", large.base_url)])
    prometheus = PrometheusServer(tmp_path)
    async with serve_gateway(config) as gateway:
        gateway_address = gateway.url.removeprefix("http://")
        await asyncio.to_thread(prometheus.start, [pod_target(gateway_address, NAMESPACE, "chat-gateway-7d9f-abcde")])
        source = MetricsSource(PrometheusSettings(url=prometheus.url, rate_window="5s"))
        outcomes: list[dict[str, object]] = []
        phase = {"name": "cold"}
        stop = asyncio.Event()

        async def clients() -> None:
            count = 0
            while not stop.is_set():
                outcome = await ask(http, gateway, stream=count % 2 == 1)
                outcome["phase"] = phase["name"]
                outcomes.append(outcome)
                count += 1
                await asyncio.sleep(0.05)

        async def wait_for(condition, timeout_s: float) -> None:
            deadline = time.monotonic() + timeout_s
            while not condition():
                assert time.monotonic() < deadline, f"timed out in phase {phase['name']}"
                await asyncio.sleep(0.05)

        load = asyncio.create_task(clients())
        try:
            # The operator's side: read the demand from Prometheus and decide, as controllers/autoscaling.py does.
            zero_config = ZeroConfig.derived(COLD_START_S, 5.0)
            decisions = []
            deadline = time.monotonic() + 30
            while True:
                demand, error = await asyncio.to_thread(source.read_gateway_demand, NAMESPACE, DEPLOYMENT, time.time())
                decision = decide_zero(time.time(), ZeroInputs(0, None, None, demand), None, zero_config)
                decisions.append((demand, error, decision.reason))
                if decision.replicas == 1:
                    break
                assert time.monotonic() < deadline, f"never woke: {decisions[-3:]}"
                await asyncio.sleep(0.5)
            assert demand is not None and demand > 0 and error is None
            phase["name"] = "waking"
            await asyncio.sleep(COLD_START_S)  # the replica loads
            await small.start(port)
            await wait_for(lambda: any(o["tier"] == "small" for o in outcomes), 10)
            phase["name"] = "awake"
            awake_from = len(outcomes)
            await wait_for(lambda: len(outcomes) >= awake_from + 10, 10)
            # Back to zero: the Service loses its endpoint, the bridge takes over again.
            await small.stop()
            phase["name"] = "asleep"
            asleep_from = len(outcomes)
            await wait_for(lambda: len([o for o in outcomes[asleep_from:] if o["tier"] == "large"]) >= 6, 10)
        finally:
            stop.set()
            await load
            await small.stop()
            source.close()
            await asyncio.to_thread(prometheus.stop)

    assert all(o["status"] == 200 and o["done"] for o in outcomes), [o for o in outcomes if o["status"] != 200]
    assert all(o["content"] in ("Paris, large says.", "Paris, small says.") for o in outcomes)
    cold = [o for o in outcomes if o["phase"] in ("cold", "waking")]
    assert len(cold) >= 10 and all(o["tier"] == "large" and o["escalations"] == "small:cold" for o in cold[:-1])
    # A 600 s declared cold start exceeds the 1 s hold: bridged at once, nobody waits for the wake.
    assert max(float(o["seconds"]) for o in cold) < 1.0, max(o["seconds"] for o in cold)
    awake = [o for o in outcomes[awake_from:asleep_from]]
    assert awake and all(o["tier"] == "small" and o["escalations"] == "" for o in awake)
    assert {o["stream"] for o in awake} == {True, False} and {o["stream"] for o in cold} == {True, False}
    asleep = outcomes[asleep_from:]
    assert all(o["tier"] in ("small", "large") for o in asleep) and asleep[-1]["tier"] == "large"
    bridged_cold = sum(1 for o in outcomes if "small:cold" in str(o["escalations"]))
    assert gateway.metric("neuroscale_gateway_cold_requests_total", tier="small",
                          model_deployment=DEPLOYMENT) == bridged_cold
    assert gateway.metric("neuroscale_gateway_escalations_total", from_tier="small", reason="cold") == bridged_cold


async def test_demand_read_says_why_it_has_no_value(tmp_path: Path) -> None:
    prometheus = await asyncio.to_thread(PrometheusServer(tmp_path).start, [])
    source = MetricsSource(PrometheusSettings(url=prometheus.url, rate_window="5s"))
    try:
        demand, error = await asyncio.to_thread(source.read_gateway_demand, NAMESPACE, DEPLOYMENT, time.time())
        assert demand is None and error == f"no cascade gateway reports demand for {NAMESPACE}/{DEPLOYMENT}"
        await asyncio.to_thread(prometheus.stop)
        demand, error = await asyncio.to_thread(source.read_gateway_demand, NAMESPACE, DEPLOYMENT, time.time())
        assert demand is None and error is not None and error.startswith(f"Prometheus at {prometheus.url}")
    finally:
        source.close()
        await asyncio.to_thread(prometheus.stop)


async def test_request_held_for_a_wake_within_the_hold_is_served_by_the_woken_tier(
    large: StubUpstream, http: aiohttp.ClientSession,
) -> None:
    port = free_loopback_port()
    small = StubUpstream("small", answer="Paris, small says.")
    config = make_config([openai_tier("small", f"http://127.0.0.1:{port}/v1", wake={
        "model_deployment": DEPLOYMENT, "cold_start_seconds": 1.0, "hold_seconds": 5.0,
        "probe_interval_seconds": 0.1}), openai_tier("large", large.base_url)])
    async with serve_gateway(config) as gateway:
        await asyncio.sleep(0.3)  # the first probe found the tier cold
        held = [asyncio.create_task(ask(http, gateway, stream=bool(i % 2))) for i in range(4)]
        await asyncio.sleep(1.0)
        assert not any(task.done() for task in held), "a wake expected within the hold is waited for"
        await small.start(port)
        try:
            outcomes = await asyncio.gather(*held)
        finally:
            await small.stop()
    assert all(o["status"] == 200 and o["done"] and o["tier"] == "small" and o["escalations"] == ""
               for o in outcomes), outcomes
    assert all(1.0 <= float(o["seconds"]) < 5.0 for o in outcomes)
    assert gateway.metric("neuroscale_gateway_cold_requests_total", tier="small", model_deployment=DEPLOYMENT) == 4
    assert large.requests == []
