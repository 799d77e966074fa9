"""The gateway routing a tier over its replicas itself, over real HTTP in front of stub replicas that record what
they received: every turn of a conversation (and every request with one session header) lands on one replica;
a burst of one hot conversation spreads so no replica holds more than the load bound; a replica that is gone
(connection refused) costs a retry on the next replica, never a request; streams are routed and counted too; an
endpoint update (a replica gone, one not ready) holds from the next request, and with no endpoint known requests
go through the Service; least-loaded spreads even one conversation."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import aiohttp
import pytest

from neuroscale.gateway.app import STATE
from neuroscale.routing.balancer import load_bound
from tests.support.gateway_harness import RunningGateway, make_config, openai_tier, serve_gateway
from tests.support.stub_upstream import StubUpstream

REPLICAS = 4


@pytest.fixture
async def replicas() -> AsyncIterator[list[StubUpstream]]:
    stubs = [await StubUpstream(f"replica-{index}", answer="Fine.").start() for index in range(REPLICAS)]
    try:
        yield stubs
    finally:
        for stub in stubs:
            await stub.stop()


def routed_config(stubs: list[StubUpstream], service_url: str = "http://127.0.0.1:9/v1", **routing: object) -> object:
    """A tier routed over `stubs`; `service_url` is where requests go while no replica is known."""
    static = [f"127.0.0.1:{stub.port}" for stub in stubs]
    tier = openai_tier("small", service_url,
                       routing={"service": "small", "namespace": "models", "static_replicas": static, **routing})
    return make_config([tier])


@pytest.fixture
async def gateway(replicas: list[StubUpstream]) -> AsyncIterator[RunningGateway]:
    async with serve_gateway(routed_config(replicas)) as running:  # type: ignore[arg-type]
        yield running


def conversation(topic: int, turns: int) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": f"Tell me about topic {topic}."}]
    for turn in range(1, turns):
        messages += [{"role": "assistant", "content": "Fine."}, {"role": "user", "content": f"And more, {turn}?"}]
    return messages


async def ask(http: aiohttp.ClientSession, gateway: RunningGateway, messages: list[dict[str, str]],
              headers: dict[str, str] | None = None, stream: bool = False) -> int:
    async with http.post(f"{gateway.base_url}/chat/completions", headers=headers,
                         json={"model": "cascade", "messages": messages, "stream": stream}) as response:
        await response.read()
        return response.status


def replica_of(stubs: list[StubUpstream], needle: str) -> set[str]:
    """The replicas that received a request whose first user message contains `needle`."""
    return {stub.name for stub in stubs for body in stub.requests
            if any(m["role"] == "user" and needle in m["content"] for m in body["messages"][:2])}


async def test_each_conversation_stays_on_one_replica(gateway: RunningGateway, replicas: list[StubUpstream],
                                                      http: aiohttp.ClientSession) -> None:
    topics = range(24)
    for turns in range(1, 5):  # turn by turn, every conversation resending its history; one request at a time, so
        for topic in topics:  # no replica is ever over its bound and nothing spills (the next test spills)
            assert await ask(http, gateway, conversation(topic, turns)) == 200
    placements = [replica_of(replicas, f"topic {t}.") for t in topics]
    assert all(len(placed) == 1 for placed in placements), placements
    used = {next(iter(placed)) for placed in placements}
    assert len(used) == REPLICAS, "24 conversations hash onto every one of 4 replicas"


async def test_a_session_header_keeps_different_prompts_together(gateway: RunningGateway,
                                                                 replicas: list[StubUpstream],
                                                                 http: aiohttp.ClientSession) -> None:
    for index in range(12):
        headers = {"x-neuroscale-session": "user-42"}
        assert await ask(http, gateway, conversation(1000 + index, 1), headers) == 200
    assert len(set().union(*(replica_of(replicas, f"topic {1000 + i}.") for i in range(12)))) == 1


async def test_a_hot_conversation_spreads_within_the_load_bound(replicas: list[StubUpstream],
                                                                http: aiohttp.ClientSession) -> None:
    for stub in replicas:
        stub.behaviour.delay_seconds = 0.3  # all of the burst is in flight at once
    burst = 16
    async with serve_gateway(routed_config(replicas)) as gateway:  # type: ignore[arg-type]
        statuses = await asyncio.gather(*(ask(http, gateway, conversation(7, 3)) for _ in range(burst)))
    assert statuses == [200] * burst
    # The last request of the burst sees the other 15 in flight; every prompt has the mean length, so c = 1.25.
    bound = load_bound(burst - 1, REPLICAS, 1.25)
    assert bound == 1.25 * burst / REPLICAS == 5
    assert max(stub.max_in_flight for stub in replicas) <= bound
    assert sum(1 for stub in replicas if stub.requests) >= math.ceil(burst / bound)


async def test_least_loaded_spreads_one_conversation(replicas: list[StubUpstream],
                                                     http: aiohttp.ClientSession) -> None:
    for stub in replicas:
        stub.behaviour.delay_seconds = 0.2
    async with serve_gateway(routed_config(replicas, policy="least-loaded")) as gateway:  # type: ignore[arg-type]
        assert await asyncio.gather(*(ask(http, gateway, conversation(3, 1)) for _ in range(8))) == [200] * 8
    assert [stub.max_in_flight for stub in replicas] == [2] * REPLICAS


async def test_a_replica_that_left_loses_no_request(gateway: RunningGateway, replicas: list[StubUpstream],
                                                    http: aiohttp.ClientSession) -> None:
    topics = range(40)
    for topic in topics:
        assert await ask(http, gateway, conversation(topic, 1)) == 200
    gone = replicas[0]
    moved = [t for t in topics if replica_of(replicas, f"topic {t}.") == {gone.name}]
    assert moved, "some conversations lived on the replica that leaves"
    received = len(gone.requests)
    await gone.stop()  # still listed (the EndpointSlice has not caught up): its port refuses connections
    for stream in (False, True):  # all at once: retries under load
        statuses = await asyncio.gather(*(ask(http, gateway, conversation(t, 2), stream=stream) for t in topics))
        assert statuses == [200] * len(topics)
    assert len(gone.requests) == received
    for turns in (3, 4):  # one at a time: each moved conversation found one new home for both turns
        for topic in moved:
            assert await ask(http, gateway, conversation(topic, turns)) == 200
    for topic in moved:
        homes = {stub.name for stub in replicas[1:] for body in stub.requests
                 if any(f"topic {topic}." in m["content"] for m in body["messages"][:2]) and len(body["messages"]) > 4}
        assert len(homes) == 1, (topic, homes)


async def test_streams_are_routed_and_released(gateway: RunningGateway, replicas: list[StubUpstream],
                                               http: aiohttp.ClientSession) -> None:
    for turns in (1, 2, 3):
        assert await ask(http, gateway, conversation(5, turns), stream=True) == 200
    assert len(replica_of(replicas, "topic 5.")) == 1
    upstream = gateway.app[STATE].cascade.upstreams[0]  # type: ignore[union-attr]
    assert sum(upstream.pool.loads.values()) == 0, "every finished stream gave its slot back"



async def test_an_endpointslice_update_takes_effect_on_the_next_request(replicas: list[StubUpstream],
                                                                       http: aiohttp.ClientSession) -> None:
    from neuroscale.routing.endpoints import Replica

    async with StubUpstream("service") as service, \
            serve_gateway(routed_config(replicas, service.base_url)) as gateway:  # type: ignore[arg-type]
        pool = gateway.app[STATE].cascade.upstreams[0].pool  # type: ignore[union-attr]
        address = [f"127.0.0.1:{stub.port}" for stub in replicas]
        # What the watch hands over: replica 0 gone, replica 1 not ready (terminating), 2 and 3 serving.
        pool.update([Replica(address[1], False), Replica(address[2], True), Replica(address[3], True)])
        for topic in range(30):
            assert await ask(http, gateway, conversation(2000 + topic, 1)) == 200
        assert not replicas[0].requests and not replicas[1].requests and not service.requests
        assert replicas[2].requests and replicas[3].requests
        pool.update([])  # no endpoint known (the watch has not listed yet): through the Service
        assert await ask(http, gateway, conversation(3000, 1)) == 200
        assert len(service.requests) == 1
