"""The gateway's hold-or-bridge decision for a scale-to-zero tier (gateway/warmup.py), driven by probe verdicts.

Covers: a ready tier admitted at once and never counted as demand; a cold tier whose expected wake exceeds the hold
bridged at once and counted; a wake expected within the hold held until the probe finds it ready; a hold that runs
out bridged; with no tier left to bridge to, held until ready (never refused for being early); the measured cold
start (first cold request to ready) replacing the declared one; a wake overdue by a whole cold start restarted;
a tier going back to zero starting a new wake; tiers without wake settings always admitted; the counter exported at
zero before any request; the gateway config refusing unknown wake fields; the operator rendering wake settings only
for a ModelDeployment tier with autoscaling and minReplicas 0.
"""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import CollectorRegistry
from pydantic import ValidationError

from neuroscale.api.inferencecascade import InferenceCascadeSpec
from neuroscale.gateway.config import GatewayConfig, OpenAITier
from neuroscale.gateway.warmup import Warmup
from neuroscale.render.inferencecascade import resolve_tiers
from tests.support.factories import make_inference_cascade, make_model_deployment


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tier(cold_start: float = 600.0, hold: float = 10.0, name: str = "small") -> OpenAITier:
    return OpenAITier(name=name, url="http://small.ml.svc:8000/v1", model="m",
                      wake={"model_deployment": "llama", "cold_start_seconds": cold_start, "hold_seconds": hold})


def warmup(*tiers: OpenAITier, clock: Clock | None = None) -> tuple[Warmup, CollectorRegistry]:
    registry = CollectorRegistry()
    built = Warmup(list(tiers), registry)
    if clock is not None:
        for wake in built.tiers.values():
            wake._clock = clock
    return built, registry


def cold_requests(registry: CollectorRegistry) -> float:
    value = registry.get_sample_value("neuroscale_gateway_cold_requests_total",
                                      {"tier": "small", "model_deployment": "llama"})
    assert value is not None, "the counter must be exported (at zero) before any request"
    return value


async def test_ready_tier_is_admitted_and_not_counted() -> None:
    built, registry = warmup(tier())
    built.tiers[0].observe(True)
    assert await built.admit(0, can_bridge=True)
    assert cold_requests(registry) == 0


async def test_cold_tier_with_a_long_wake_is_bridged_at_once_and_counted() -> None:
    built, registry = warmup(tier(cold_start=600, hold=10))
    built.tiers[0].observe(False)
    assert not await asyncio.wait_for(built.admit(0, can_bridge=True), 0.5)
    assert cold_requests(registry) == 1


async def test_wake_within_the_hold_is_waited_for() -> None:
    clock = Clock()
    built, registry = warmup(tier(cold_start=5, hold=10), clock=clock)
    wake = built.tiers[0]
    wake.observe(False)
    held = asyncio.create_task(built.admit(0, can_bridge=True))
    await asyncio.sleep(0.05)
    assert not held.done() and registry.get_sample_value("neuroscale_gateway_cold_held", {"tier": "small"}) == 1
    clock.now += 4.0
    wake.observe(True)
    assert await asyncio.wait_for(held, 1.0)
    assert wake.measured_cold_start_s == 4.0 and wake.cold_start_s == 4.0
    assert registry.get_sample_value("neuroscale_gateway_measured_cold_start_seconds", {"tier": "small"}) == 4.0
    assert registry.get_sample_value("neuroscale_gateway_cold_held", {"tier": "small"}) == 0


async def test_hold_that_runs_out_is_bridged() -> None:
    built, _ = warmup(tier(cold_start=0.01, hold=0.1))
    built.tiers[0].observe(False)
    assert not await asyncio.wait_for(built.admit(0, can_bridge=True), 1.0)


async def test_without_a_tier_to_bridge_to_the_request_waits_for_the_wake() -> None:
    built, _ = warmup(tier(cold_start=600, hold=0))
    wake = built.tiers[0]
    wake.observe(False)
    held = asyncio.create_task(built.admit(0, can_bridge=False))
    await asyncio.sleep(0.1)
    assert not held.done(), "a long expected wake must not refuse a request that has nowhere else to go"
    wake.observe(True)
    assert await asyncio.wait_for(held, 1.0)


async def test_overdue_wake_restarts_and_going_back_to_zero_starts_a_new_one() -> None:
    clock = Clock()
    built, _ = warmup(tier(cold_start=60, hold=0), clock=clock)
    wake = built.tiers[0]
    wake.observe(False)
    assert not await built.admit(0, can_bridge=True)
    assert wake.waking_since == 1000.0 and wake.expected_wait(clock.now) == 60
    clock.now += 50
    assert not await built.admit(0, can_bridge=True)
    assert wake.waking_since == 1000.0 and wake.expected_wait(clock.now) == 10
    clock.now += 100  # past twice the cold start: that wake failed or was undone
    assert not await built.admit(0, can_bridge=True)
    assert wake.waking_since == clock.now
    wake.observe(True)
    wake.observe(False)
    assert wake.waking_since is None and not wake._awake.is_set()


async def test_tiers_without_wake_settings_are_always_admitted() -> None:
    plain = OpenAITier(name="large", url="http://large/v1", model="m")
    built, registry = warmup(plain)
    assert built.tiers == {} and await built.admit(0, can_bridge=False)
    assert registry.get_sample_value("neuroscale_gateway_cold_requests_total",
                                     {"tier": "large", "model_deployment": "x"}) is None


def test_wake_settings_are_strict() -> None:
    with pytest.raises(ValidationError, match="extra"):
        GatewayConfig.model_validate({"model_name": "c", "tiers": [
            {"kind": "openai", "name": "s", "url": "http://s/v1", "model": "m",
             "wake": {"model_deployment": "d", "cold_start_seconds": 1, "holdSeconds": 3}}]})


@pytest.mark.parametrize("autoscaling, wakes", [
    ({"minReplicas": 0}, True), ({"minReplicas": 1}, False), (None, False),
])
def test_operator_gives_wake_settings_only_to_a_tier_that_may_scale_to_zero(autoscaling, wakes) -> None:
    cascade = make_inference_cascade()
    cascade["spec"]["tiers"][0]["modelDeployment"]["wakeHoldSeconds"] = 4
    spec = InferenceCascadeSpec.model_validate(cascade["spec"])
    overrides = {"autoscaling": {**autoscaling, "coldStartSeconds": 420}} if autoscaling is not None else {}
    small = resolve_tiers(spec, "ml", {"llama": make_model_deployment("llama", "ml", **overrides)})[0]
    expected = {"model_deployment": "llama", "cold_start_seconds": 420.0, "hold_seconds": 4.0} if wakes else None
    assert small.config.get("wake") == expected
    parsed = GatewayConfig.model_validate({"model_name": "c", "tiers": [small.config]})
    assert (parsed.tiers[0].wake is not None) == wakes
