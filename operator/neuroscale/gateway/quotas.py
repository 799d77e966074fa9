"""Per-tenant requests-per-minute and tokens-per-minute, shared by every gateway replica through Redis.

The counting is the `limits` package's sliding-window counter (two Redis keys per limit, one Lua call per
operation), in Redis when `QuotaConfig.redis_url` is set and in process otherwise. Admission reads both windows in
one concurrent round trip and refuses a tenant with nothing left (429); the request is then counted off the
response path, and its tokens once the answer is out (they are only known then), capped at what is left in the
window so the next request is refused rather than the tenant going into debt for minutes. The price of one round
trip is that requests admitted at the same instant on several replicas can overshoot a limit by that many.

Quotas never take the gateway down with them: when Redis is slow (`timeout_seconds`) or unreachable, the request
goes through unchecked and `neuroscale_gateway_quota_unavailable_total` counts it; after `breaker_failures` such
failures in a row, Redis is left alone for `breaker_reset_seconds` (the cache's circuit breaker).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import redis.asyncio as redis_asyncio
from limits import RateLimitItem, RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from prometheus_client import CollectorRegistry, Counter

from neuroscale.cache.backends import CacheUnavailable
from neuroscale.cache.redis_backend import RedisBreaker
from neuroscale.gateway.auth import Tenant
from neuroscale.gateway.config import QuotaConfig
from neuroscale.gateway.protocol import OpenAIError

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_FAILURES = (CacheUnavailable, redis_asyncio.RedisError, OSError, TimeoutError)


def duration(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* format: 20ms, 1s, 6m0s."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


class Quotas:
    """Admit or refuse a tenant's request, and charge its tokens afterwards."""

    def __init__(self, config: QuotaConfig, registry: CollectorRegistry, clock: Callable[[], float] = time.time):
        self.config = config
        self._clock = clock
        self._pool: redis_asyncio.ConnectionPool | None = None
        storage: Any
        if config.redis_url:
            # Our own pool, so shutdown can close it; short timeouts and no retries: the breaker is the policy.
            self._pool = redis_asyncio.ConnectionPool.from_url(
                config.redis_url,
                password=os.environ.get(config.password_env) if config.password_env else None,
                socket_timeout=config.timeout_seconds, socket_connect_timeout=config.timeout_seconds,
                health_check_interval=30, retry=None,
            )
            storage = RedisStorage("async+" + config.redis_url, implementation="redispy",
                                   key_prefix="neuroscale-quota", connection_pool=self._pool)
        else:
            storage = MemoryStorage()
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._breaker = RedisBreaker(config.breaker_failures, config.breaker_reset_seconds)
        self._items: dict[int, RateLimitItem] = {}
        self.charges: set[asyncio.Task[None]] = set()
        self.rejections = Counter(
            "neuroscale_gateway_quota_rejections", "Requests refused with 429, by tenant and the limit hit "
            "(requests|tokens).", ["tenant", "limit"], registry=registry,
        )
        self.unavailable = Counter(
            "neuroscale_gateway_quota_unavailable",
            "Quota checks or charges skipped because Redis failed or was slow (the request went through unchecked).",
            ["operation"], registry=registry,
        )

    def limits_of(self, tenant: Tenant) -> tuple[int | None, int | None]:
        """(requests, tokens) per minute: the tenant's own, else the cascade's defaults."""
        return (tenant.requests_per_minute or self.config.requests_per_minute,
                tenant.tokens_per_minute or self.config.tokens_per_minute)

    def _item(self, amount: int) -> RateLimitItem:
        item = self._items.get(amount)
        if item is None:
            item = self._items[amount] = RateLimitItemPerMinute(amount, namespace=self.config.key_prefix)
        return item

    async def _redis(self, operation: Callable[[], Awaitable[_T]]) -> _T:
        async def bounded() -> _T:
            async with asyncio.timeout(self.config.timeout_seconds):
                return await operation()

        return await self._breaker.call(bounded)

    async def admit(self, tenant: Tenant) -> dict[str, str]:
        """The x-ratelimit-* headers for the answer; raises a 429 OpenAIError when a limit is used up."""
        rpm, tpm = self.limits_of(tenant)
        if rpm is None and tpm is None:
            return {}
        windows = [(self._item(amount), limit) for amount, limit in ((rpm, "requests"), (tpm, "tokens"))
                   if amount is not None]
        try:
            results = await self._redis(lambda: asyncio.gather(
                *(self._limiter.get_window_stats(item, limit, tenant.name) for item, limit in windows)))
        except _FAILURES as error:
            self.unavailable.labels("check").inc()
            log.debug("quota check skipped for %s: %r", tenant.name, error)
            return {}
        now = self._clock()
        headers: dict[str, str] = {}
        refused: tuple[str, float] | None = None
        if rpm is not None:
            stats = results[0]
            headers |= {"x-ratelimit-limit-requests": str(rpm),
                        "x-ratelimit-remaining-requests": str(max(0, stats.remaining - 1)),
                        "x-ratelimit-reset-requests": duration(stats.reset_time - now)}
            if stats.remaining <= 0:
                refused = ("requests", stats.reset_time - now)
        if tpm is not None:
            stats = results[-1]
            headers |= {"x-ratelimit-limit-tokens": str(tpm), "x-ratelimit-remaining-tokens": str(stats.remaining),
                        "x-ratelimit-reset-tokens": duration(stats.reset_time - now)}
            if stats.remaining <= 0 and refused is None:
                refused = ("tokens", stats.reset_time - now)
        if refused is not None:
            limit, wait = refused
            self.rejections.labels(tenant.metric_label, limit).inc()
            per_minute = rpm if limit == "requests" else tpm
            raise OpenAIError(
                429, f"Rate limit reached for tenant '{tenant.name}' on {limit} per minute: limit {per_minute}. "
                f"Please try again in {duration(wait)}.", type="rate_limit_error", code="rate_limit_exceeded",
                headers={**headers, "Retry-After": str(max(1, math.ceil(wait)))},
            )
        if rpm is not None:
            self._soon(self.charge(tenant, 1, "requests", rpm))
        return headers

    def _soon(self, charge: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(charge)
        self.charges.add(task)
        task.add_done_callback(self.charges.discard)

    def charge_soon(self, tenant: Tenant, tokens: int) -> None:
        """Charge a tenant's tokens off the response path; shutdown waits for charges in flight (`close`)."""
        tpm = self.limits_of(tenant)[1]
        if tokens > 0 and tpm is not None:
            self._soon(self.charge(tenant, tokens, "tokens", tpm))

    async def charge(self, tenant: Tenant, amount: int, limit: str, per_minute: int) -> None:
        item = self._item(per_minute)
        try:
            # A hit that would pass the limit counts nothing, so charge what is left when that is less. Two tries:
            # another replica charging between the read and the hit makes the first one fail.
            for _ in range(2 if amount > 1 else 1):
                cost = amount
                if amount > 1:
                    stats = await self._redis(lambda: self._limiter.get_window_stats(item, limit, tenant.name))
                    cost = min(amount, stats.remaining)
                if cost <= 0 or await self._redis(lambda: self._limiter.hit(item, limit, tenant.name, cost=cost)):
                    return
        except _FAILURES as error:
            self.unavailable.labels("charge").inc()
            log.debug("%s charge of %d skipped for %s: %r", limit, amount, tenant.name, error)

    async def close(self, timeout: float) -> None:
        if self.charges:
            await asyncio.wait(set(self.charges), timeout=timeout)
        if self._pool is not None:
            await self._pool.disconnect()
