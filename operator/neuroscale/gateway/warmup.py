"""Scale from zero with a bridge: hold a request for a waking ModelDeployment tier up to a deadline, or let the
next tier serve it, and count the demand that wakes the tier.

For each tier whose ModelDeployment may be scaled to zero (`wake` in its config) the gateway probes readiness itself
(`GET {url}/models` every `probe_interval_seconds`: a Service without ready endpoints refuses the connection, an
engine still loading does not answer 200), so the request path never waits on a probe. A request that finds the tier
not ready:

1. is counted in `neuroscale_gateway_cold_requests_total{tier, model_deployment}`. Prometheus sums the counter over
   every gateway replica and the operator's autoscaler scales the deployment 0→1 on it (autoscale/zero.py). The
   gateway needs no right to write to Kubernetes for this (a routing gateway may only read EndpointSlices),
   several replicas never race on a write, and a replica that restarts loses nothing Prometheus has not already
   scraped;
2. waits for the tier if it is expected awake within `hold_seconds` (measured: how long the last wake this replica
   saw took from its first cold request to ready; declared: the ModelDeployment's coldStartSeconds, until then);
3. otherwise, or when the hold runs out, goes to the next tier of its plan (escalation reason `cold`). When no tier
   is left in the plan it waits as long as the tier's `total_seconds`: a request is never refused for being early.

As soon as a probe finds the tier ready, held requests go to it and new ones no longer skip it: traffic moves back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge

from neuroscale.gateway.config import OpenAITier, WakeSettings

log = logging.getLogger(__name__)

__all__ = ["TierWake", "Warmup"]


class _Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.cold_requests = Counter(
            "neuroscale_gateway_cold_requests",
            "Requests that found a scale-to-zero tier without a ready replica (held, then served by it or bridged to "
            "the next tier): the demand the operator wakes the ModelDeployment on.",
            ["tier", "model_deployment"], registry=registry,
        )
        self.held = Gauge("neuroscale_gateway_cold_held", "Requests waiting now for a scale-to-zero tier to wake.",
                          ["tier"], registry=registry)
        self.awake = Gauge("neuroscale_gateway_tier_awake", "1 when the last readiness probe of a scale-to-zero "
                           "tier succeeded.", ["tier"], registry=registry)
        self.cold_start = Gauge("neuroscale_gateway_measured_cold_start_seconds",
                                "The last wake this gateway saw: first cold request to ready.", ["tier"],
                                registry=registry)


class TierWake:
    """One scale-to-zero tier as this gateway replica sees it: whether it is awake, and since when it is waking."""

    def __init__(self, tier: OpenAITier, settings: WakeSettings, metrics: _Metrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.tier = tier
        self.settings = settings
        self._metrics = metrics
        self._clock = clock
        self.ready: bool | None = None  # None: not probed yet
        self.waking_since: float | None = None
        self.measured_cold_start_s: float | None = None
        self._awake = asyncio.Event()
        self._probed = asyncio.Event()
        # Exported at zero from the start, so Prometheus' increase() sees the first cold request as an increase.
        self._cold_requests = metrics.cold_requests.labels(tier.name, settings.model_deployment)
        self._held = metrics.held.labels(tier.name)
        metrics.awake.labels(tier.name).set(0)

    @property
    def cold_start_s(self) -> float:
        """The cold start to expect: the last one measured here, else the declared one."""
        if self.measured_cold_start_s is not None:
            return self.measured_cold_start_s
        return self.settings.cold_start_seconds

    def expected_wait(self, now: float) -> float:
        """Seconds until the tier should be ready, counted from the first cold request of this wake."""
        if self.waking_since is None:
            return self.cold_start_s
        return max(0.0, self.cold_start_s - (now - self.waking_since))

    def observe(self, ready: bool) -> None:
        """A probe's verdict. Ready after a wake this replica started measures the cold start."""
        now = self._clock()
        if ready and self.ready is not True:
            if self.waking_since is not None:
                self.measured_cold_start_s = now - self.waking_since
                self._metrics.cold_start.labels(self.tier.name).set(self.measured_cold_start_s)
                log.info("tier %s is awake after %.1fs", self.tier.name, self.measured_cold_start_s)
            self.waking_since = None
            self._awake.set()
        elif not ready and self.ready is not False:
            self._awake.clear()
            self.waking_since = None
        self.ready = ready
        self._metrics.awake.labels(self.tier.name).set(1 if ready else 0)
        self._probed.set()

    async def admit(self, can_bridge: bool) -> bool:
        """True: send the request to this tier now. False: the next tier should serve it (the tier is cold)."""
        if not self._probed.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.tier.timeouts.connect_seconds):
                    await self._probed.wait()
        if self.ready:
            return True
        now = self._clock()
        self._cold_requests.inc()
        overdue_after = 2 * max(self.cold_start_s, self.settings.hold_seconds)
        if self.waking_since is None or now - self.waking_since > overdue_after:
            # A new wake, or one overdue by a whole cold start (it failed, or the deployment went back to zero).
            self.waking_since = now
        if can_bridge and self.expected_wait(now) > self.settings.hold_seconds:
            return False
        self._held.inc()
        try:
            async with asyncio.timeout(self.settings.hold_seconds if can_bridge else self.tier.timeouts.total_seconds):
                await self._awake.wait()
            return True
        except TimeoutError:
            return not can_bridge  # with nothing to bridge to, the tier is tried anyway and its own failure reported
        finally:
            self._held.dec()

    async def probe(self, session: aiohttp.ClientSession) -> bool:
        url = self.tier.url.rstrip("/") + "/models"
        timeout = aiohttp.ClientTimeout(
            total=max(self.tier.timeouts.connect_seconds, self.settings.probe_interval_seconds))
        try:
            async with session.get(url, timeout=timeout, allow_redirects=False) as response:
                return 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError, OSError):
            return False

    async def run(self, session: aiohttp.ClientSession) -> None:
        while True:
            self.observe(await self.probe(session))
            await asyncio.sleep(self.settings.probe_interval_seconds)


class Warmup:
    """Every scale-to-zero tier of a cascade, by tier index; tiers without `wake` are always admitted."""

    def __init__(self, tiers: Sequence[Any], registry: CollectorRegistry) -> None:
        wakes = [(index, tier) for index, tier in enumerate(tiers) if getattr(tier, "wake", None) is not None]
        metrics = _Metrics(registry) if wakes else None
        self.tiers: dict[int, TierWake] = {
            index: TierWake(tier, tier.wake, metrics) for index, tier in wakes  # type: ignore[arg-type]
        }
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, session: aiohttp.ClientSession) -> None:
        self._tasks = [asyncio.create_task(wake.run(session)) for wake in self.tiers.values()]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def admit(self, index: int, can_bridge: bool) -> bool:
        wake = self.tiers.get(index)
        return True if wake is None else await wake.admit(can_bridge)
