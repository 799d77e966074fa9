"""An OpenAI-compatible tier whose replica the gateway picks per request (see `neuroscale.routing`).

The replicas come from the tier's EndpointSlices (or a static list); the choice is consistent hashing with bounded
loads over the request's routing key, with this gateway's in-flight counts as the loads. A replica that refuses the
connection or does not accept it within the tier's connect timeout (nothing was sent, so nothing can have run
twice) is passed over for the next one in the key's order, so a replica that left before the EndpointSlice said so
costs a retry, not a request. With no replica known yet (the watch has not listed, or none is ready), requests go
through the Service as they did without routing.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import aiohttp

from neuroscale.gateway.adapters import upstream_model
from neuroscale.gateway.config import Limits, OpenAITier
from neuroscale.gateway.protocol import Endpoint
from neuroscale.gateway.upstreams.openai import _PATHS, OpenAIUpstream
from neuroscale.routing.balancer import HashRing, RunningMean, choose, request_factor
from neuroscale.routing.endpoints import Replica
from neuroscale.routing.keys import HotPrefixes, prompt_openings, routing_key

log = logging.getLogger(__name__)

# The headers of the request being served: set by the app for each request, read here for the session key (the
# Upstream protocol passes bodies, not headers). A ContextVar follows the request's task, streams included.
REQUEST_HEADERS: ContextVar[Mapping[str, str]] = ContextVar("neuroscale_request_headers", default={})


class ReplicaPool:
    """The replicas of one tier as last listed, and this gateway's requests in flight on each."""

    def __init__(self) -> None:
        self.ring = HashRing(())
        self.ready: frozenset[str] = frozenset()
        self.loads: dict[str, int] = {}
        self._turn = itertools.count()

    def update(self, replicas: Sequence[Replica]) -> None:
        """A new endpoint set. The ring holds every known replica, ready or not, so a replica that turns unready
        for a moment keeps its keys' positions; only ready ones are chosen."""
        names = tuple(sorted(replica.address for replica in replicas))
        if names != self.ring.replicas:
            self.ring = HashRing(names)
            # Counts of departed replicas go once their last request ended (an ending request still finds its own).
            self.loads = {name: count for name, count in self.loads.items() if count or name in self.ring.members}
        self.ready = frozenset(replica.address for replica in replicas if replica.ready)
        log.info("tier replicas: %d known, %d ready", len(names), len(self.ready))

    def order(self, key: bytes | None, factor: float) -> list[str]:
        """Ready replicas in the order to try them for this key, under this request's load factor."""
        return choose(self.ring, key, self.loads, self.ready, factor=factor, tie_break=next(self._turn))


class RoutedOpenAIUpstream(OpenAIUpstream):
    """OpenAIUpstream that sends each request to a replica it chose rather than to the tier's Service."""

    def __init__(self, tier: OpenAITier, session: aiohttp.ClientSession, limits: Limits | None = None) -> None:
        super().__init__(tier, session, limits)
        assert tier.routing is not None
        self.routing = tier.routing
        self.pool = ReplicaPool()
        # Request bodies' mean size: the load bound gives a longer prompt more room (balancer.request_factor).
        self.mean_size = RunningMean()
        self.hot = HotPrefixes()
        self._watch: Any = None
        if tier.routing.static_replicas is not None:
            self.pool.update([Replica(address, True) for address in tier.routing.static_replicas])
        else:
            from neuroscale.gateway.endpoint_watch import EndpointSliceWatch

            self._watch = EndpointSliceWatch(tier.routing, self.pool.update, asyncio.get_running_loop())
            self._watch.start()

    def _post(self, endpoint: Endpoint, body: dict[str, Any]) -> Any:
        session = REQUEST_HEADERS.get().get(self.routing.session_header)
        if self.routing.policy == "least-loaded":
            session = None
        model = upstream_model(self._tier, body.get("model", ""))
        # A LoRA adapter's KV cache is its own: the model asked for is part of every opening.
        openings = [f"{model}\x00{opening}" for opening in prompt_openings(endpoint, body, self.routing.prefix_chars)]
        key = routing_key(self.routing.policy, session, openings, self.hot, len(self.pool.ready))
        data = json.dumps({**body, "model": model})
        factor = request_factor(self.routing.load_factor, len(data), self.mean_size.add(len(data)))
        return _RoutedPost(self, endpoint, data, self.pool.order(key, factor))

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.stop()


# Failures that happen before a byte of the request left: safe to send it to another replica.
_NOT_CONNECTED = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)


class _RoutedPost:
    """`async with` a POST to the first replica that accepts the connection; counts it in flight meanwhile."""

    def __init__(self, upstream: RoutedOpenAIUpstream, endpoint: Endpoint, data: str, order: list[str]) -> None:
        self._upstream = upstream
        self._endpoint = endpoint
        self._path = upstream.routing.path.rstrip("/") + _PATHS[endpoint]
        self._data = data
        self._order = order
        self._request: Any = None
        self._replica: str | None = None

    def _send(self, url: str) -> Any:
        upstream = self._upstream
        return upstream._session.post(url, data=self._data, headers=upstream._headers, timeout=upstream._timeout)

    async def __aenter__(self) -> aiohttp.ClientResponse:
        pool = self._upstream.pool  # its `loads` may be replaced while a connection opens: never hold on to it
        if not self._order:
            self._request = self._send(self._upstream._base + _PATHS[self._endpoint])
            return await self._request.__aenter__()  # type: ignore[no-any-return]
        failure: Exception | None = None
        for replica in self._order:
            request = self._send(f"http://{replica}{self._path}")
            pool.loads[replica] = pool.loads.get(replica, 0) + 1
            try:
                response = await request.__aenter__()
            except _NOT_CONNECTED as error:
                pool.loads[replica] -= 1
                log.info("replica %s did not take the connection (%s); trying the next", replica, error)
                failure = error
                continue
            except BaseException:
                pool.loads[replica] -= 1
                raise
            self._request, self._replica = request, replica
            return response  # type: ignore[no-any-return]
        assert failure is not None
        raise failure

    async def __aexit__(self, *exc: Any) -> None:
        try:
            await self._request.__aexit__(*exc)
        finally:
            if self._replica is not None:
                self._upstream.pool.loads[self._replica] -= 1
