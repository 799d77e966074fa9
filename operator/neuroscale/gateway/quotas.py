"""Per-tenant requests-per-minute and tokens-per-minute, shared by every gateway replica through Redis.

The counting is the `limits` package's sliding-window counter (two Redis keys per limit, one Lua call per
operation), in Redis when `QuotaConfig.redis_url` is set and in process otherwise. A request is counted when it
is admitted; its tokens are only known once the answer is out, so tokens are checked before (a tenant with no
tokens left in the window gets a 429) and charged after, capped at what is left in the window so the next request
is refused rather than the tenant going into debt for minutes.

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
from collections.abc import Awaitable, Callable
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
        calls: list[Awaitable[Any]] = []
        if rpm is not None:
            calls += [self._limiter.hit(self._item(rpm), "requests", tenant.name),
                      self._limiter.get_window_stats(self._item(rpm), "requests", tenant.name)]
        if tpm is not None:
            calls.append(self._limiter.get_window_stats(self._item(tpm), "tokens", tenant.name))
        try:
            results = await self._redis(lambda: asyncio.gather(*calls))
        except _FAILURES as error:
            self.unavailable.labels("check").inc()
            log.debug("quota check skipped for %s: %r", tenant.name, error)
            return {}
        now = self._clock()
        headers: dict[str, str] = {}
        refused: tuple[str, float] | None = None
        if rpm is not None:
            admitted, stats = results[0], results[1]
            # The stats were read alongside the hit, not after it: remaining is exact to within this request.
            remaining = max(0, stats.remaining - 1) if admitted else 0
            headers |= {"x-ratelimit-limit-requests": str(rpm), "x-ratelimit-remaining-requests": str(remaining),
                        "x-ratelimit-reset-requests": duration(stats.reset_time - now)}
            if not admitted:
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
        return headers

    def charge_soon(self, tenant: Tenant, tokens: int) -> None:
        """Charge `tokens` off the response path; shutdown waits for charges in flight (`drain`)."""
        if tokens <= 0 or self.limits_of(tenant)[1] is None:
            return
        task = asyncio.create_task(self.charge(tenant, tokens))
        self.charges.add(task)
        task.add_done_callback(self.charges.discard)

    async def charge(self, tenant: Tenant, tokens: int) -> None:
        tpm = self.limits_of(tenant)[1]
        if tpm is None or tokens <= 0:
            return
        item = self._item(tpm)
        try:
            # Two tries: a charge another replica made between reading what is left and charging makes the first fail.
            for _ in range(2):
                stats = await self._redis(lambda: self._limiter.get_window_stats(item, "tokens", tenant.name))
                cost = min(tokens, stats.remaining)
                if cost <= 0:
                    return
                if await self._redis(lambda: self._limiter.hit(item, "tokens", tenant.name, cost=cost)):
                    return
        except _FAILURES as error:
            self.unavailable.labels("charge").inc()
            log.debug("token charge of %d skipped for %s: %r", tokens, tenant.name, error)

    async def close(self, timeout: float) -> None:
        if self.charges:
            await asyncio.wait(set(self.charges), timeout=timeout)
        if self._pool is not None:
            await self._pool.disconnect()
