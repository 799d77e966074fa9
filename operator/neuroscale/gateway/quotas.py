"""Per-tenant requests-per-minute and tokens-per-minute, shared by every gateway replica through Redis.

Each limit is a sliding-window counter (the algorithm of the `limits` package's `SlidingWindowCounterRateLimiter`
and of Cloudflare's rate limiting): a counter per whole minute, and the usage at any instant is the current
minute's count plus the previous minute's weighted by the part of it still inside the last 60 s. It takes two
integers per tenant and limit, and never lets a burst at a minute boundary double the rate the way fixed windows do.

One Lua script per request reads both limits and, when the request is admitted, counts it: a single round trip on
the response path, timed by Redis's own clock so replicas never disagree on the minute. Tokens are only known once
the answer is out, so they are checked before (a tenant with none left gets a 429) and charged after by a second
script, off the response path and gathered over 50 ms, capped at what is left in the window so one huge answer
does not lock a tenant out for many minutes. The `limits` package was the first choice and was measured
(tests/bench/bench_quotas.py): reading two windows and counting the request takes it three Lua calls, 0.28-0.33 ms
p50 on loopback against 0.12 ms for this one script, and 1.7x the CPU per request, too much of the 0.3 ms
authentication and quotas may add. Without `redis_url`
the same arithmetic runs in process, and each replica counts alone.

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
from dataclasses import dataclass
from typing import Protocol, TypeVar

import redis.asyncio as redis_asyncio
from prometheus_client import CollectorRegistry, Counter

from neuroscale.cache.backends import CacheUnavailable
from neuroscale.cache.redis_backend import RedisBreaker
from neuroscale.gateway.auth import Tenant
from neuroscale.gateway.config import QuotaConfig
from neuroscale.gateway.protocol import OpenAIError

log = logging.getLogger(__name__)
_T = TypeVar("_T")
_FAILURES = (CacheUnavailable, redis_asyncio.RedisError, OSError, TimeoutError)
WINDOW_SECONDS = 60
CHARGE_DELAY_SECONDS = 0.05

# KEYS: requests prefix, tokens prefix. ARGV: requests limit, tokens limit (0: none).
# Returns the minute's index, the seconds into it, then previous and current counts of requests and of tokens
# (as read, before this request is counted), and 1 when admitted.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local minute = math.floor(now / 60)
local into = now - minute * 60
local function counts(prefix, limit)
  if limit == 0 then return 0, 0 end
  return tonumber(redis.call('GET', prefix .. ':' .. (minute - 1)) or '0'),
         tonumber(redis.call('GET', prefix .. ':' .. minute) or '0')
end
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local rp, rc = counts(KEYS[1], rpm)
local tp, tc = counts(KEYS[2], tpm)
local weight = 1 - into / 60
local admitted = (rpm == 0 or rp * weight + rc < rpm) and (tpm == 0 or tp * weight + tc < tpm)
if admitted and rpm > 0 then
  local key = KEYS[1] .. ':' .. minute
  redis.call('INCR', key)
  redis.call('EXPIRE', key, 180)
end
return {tostring(minute), tostring(into), rp, rc, tp, tc, admitted and 1 or 0}
"""

# KEYS: tokens prefix. ARGV: tokens limit, tokens used. Adds what fits under the limit to the current minute.
_CHARGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local minute = math.floor(now / 60)
local weight = 1 - (now - minute * 60) / 60
local previous = tonumber(redis.call('GET', KEYS[1] .. ':' .. (minute - 1)) or '0')
local key = KEYS[1] .. ':' .. minute
local current = tonumber(redis.call('GET', key) or '0')
local room = math.floor(tonumber(ARGV[1]) - previous * weight - current)
local charged = math.min(tonumber(ARGV[2]), math.max(room, 0))
if charged > 0 then
  redis.call('INCRBY', key, charged)
  redis.call('EXPIRE', key, 180)
end
return charged
"""


@dataclass(frozen=True)
class Window:
    """One limit's two minute counters, `into` seconds into the current minute (pure arithmetic from here)."""

    limit: int
    previous: int
    current: int
    into: float

    @property
    def used(self) -> float:
        return self.previous * (1 - self.into / WINDOW_SECONDS) + self.current

    @property
    def remaining(self) -> int:
        return max(0, math.floor(self.limit - self.used))

    @property
    def retry_after(self) -> float:
        """Seconds until usage falls below the limit again (0 when it is below now)."""
        if self.used < self.limit:
            return 0.0
        left = WINDOW_SECONDS - self.into
        if self.current < self.limit and self.previous:
            # Within this minute, as the previous minute's share slides out.
            return (self.used - self.limit) / self.previous * WINDOW_SECONDS + 0.001
        # Next minute the current count becomes the previous one and decays in turn.
        return left + (1 - self.limit / self.current) * WINDOW_SECONDS + 0.001

    @property
    def reset(self) -> float:
        """Seconds until no usage is left in the window (OpenAI's x-ratelimit-reset-*)."""
        if self.current:
            return 2 * WINDOW_SECONDS - self.into
        return WINDOW_SECONDS - self.into if self.previous else 0.0


def duration(seconds: float) -> str:
    """OpenAI's x-ratelimit-reset-* format: 20ms, 1s, 6m0s."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


class _Counters(Protocol):
    async def admit(self, keys: tuple[str, str], rpm: int, tpm: int) -> tuple[Window | None, Window | None, bool]: ...
    async def charge(self, key: str, tpm: int, tokens: int) -> None: ...
    async def close(self) -> None: ...


class RedisCounters:
    def __init__(self, config: QuotaConfig) -> None:
        # Short timeouts and no client retries: the breaker is the retry policy.
        self._client = redis_asyncio.from_url(
            config.redis_url or "",
            password=os.environ.get(config.password_env) if config.password_env else None,
            socket_timeout=config.timeout_seconds, socket_connect_timeout=config.timeout_seconds,
            health_check_interval=30, retry=None,
        )
        self._admit = self._client.register_script(_ADMIT)
        self._charge = self._client.register_script(_CHARGE)

    async def admit(self, keys: tuple[str, str], rpm: int, tpm: int) -> tuple[Window | None, Window | None, bool]:
        _, into, rp, rc, tp, tc, admitted = await self._admit(keys=list(keys), args=[rpm, tpm])
        seconds = float(into)
        return (Window(rpm, int(rp), int(rc), seconds) if rpm else None,
                Window(tpm, int(tp), int(tc), seconds) if tpm else None, bool(admitted))

    async def charge(self, key: str, tpm: int, tokens: int) -> None:
        await self._charge(keys=[key], args=[tpm, tokens])

    async def close(self) -> None:
        await self._client.aclose()


class MemoryCounters:
    """The same arithmetic in this process, for a gateway without Redis (each replica counts alone)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._counts: dict[tuple[str, int], int] = {}

    def _window(self, key: str, limit: int) -> tuple[Window, int]:
        now = self._clock()
        minute = int(now // WINDOW_SECONDS)
        if len(self._counts) > 4096:  # forget minutes that no longer count
            self._counts = {k: v for k, v in self._counts.items() if k[1] >= minute - 1}
        window = Window(limit, self._counts.get((key, minute - 1), 0), self._counts.get((key, minute), 0),
                        now - minute * WINDOW_SECONDS)
        return window, minute

    async def admit(self, keys: tuple[str, str], rpm: int, tpm: int) -> tuple[Window | None, Window | None, bool]:
        requests, minute = self._window(keys[0], rpm) if rpm else (None, 0)
        tokens = self._window(keys[1], tpm)[0] if tpm else None
        admitted = all(w is None or w.used < w.limit for w in (requests, tokens))
        if admitted and requests is not None:
            self._counts[(keys[0], minute)] = requests.current + 1
        return requests, tokens, admitted

    async def charge(self, key: str, tpm: int, tokens: int) -> None:
        window, minute = self._window(key, tpm)
        charged = min(tokens, window.remaining)
        if charged > 0:
            self._counts[(key, minute)] = window.current + charged

    async def close(self) -> None:
        self._counts.clear()


class Quotas:
    """Admit or refuse a tenant's request, and charge its tokens afterwards."""

    def __init__(self, config: QuotaConfig, registry: CollectorRegistry, counters: _Counters | None = None) -> None:
        self.config = config
        self._counters: _Counters = counters or (RedisCounters(config) if config.redis_url else MemoryCounters())
        self._breaker = RedisBreaker(config.breaker_failures, config.breaker_reset_seconds)
        # Tokens waiting to be charged, by tenant: answers that end within CHARGE_DELAY_SECONDS of each other are
        # charged in one call, so a busy tenant costs one Redis write per interval rather than one per answer.
        self._pending: dict[str, tuple[Tenant, int, int]] = {}
        self._flush: asyncio.Task[None] | None = None
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

    def _keys(self, tenant: Tenant) -> tuple[str, str]:
        # One hash slot per tenant ({...}), so a Redis Cluster runs the script on the node holding both counters.
        base = f"neuroscale-quota:{{{self.config.key_prefix}:{tenant.name}}}"
        return f"{base}:requests", f"{base}:tokens"

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
        try:
            requests, tokens, admitted = await self._redis(
                lambda: self._counters.admit(self._keys(tenant), rpm or 0, tpm or 0))
        except _FAILURES as error:
            self.unavailable.labels("check").inc()
            log.debug("quota check skipped for %s: %r", tenant.name, error)
            return {}
        headers: dict[str, str] = {}
        for name, window, counted in (("requests", requests, admitted), ("tokens", tokens, False)):
            if window is not None:
                headers |= {f"x-ratelimit-limit-{name}": str(window.limit),
                            f"x-ratelimit-remaining-{name}": str(max(0, window.remaining - counted)),
                            f"x-ratelimit-reset-{name}": duration(window.reset)}
        if admitted:
            return headers
        limit, window = next((name, w) for name, w in (("requests", requests), ("tokens", tokens))
                             if w is not None and w.used >= w.limit)
        self.rejections.labels(tenant.metric_label, limit).inc()
        raise OpenAIError(
            429, f"Rate limit reached for tenant '{tenant.name}' on {limit} per minute: limit {window.limit}. "
            f"Please try again in {duration(window.retry_after)}.", type="rate_limit_error",
            code="rate_limit_exceeded", headers={**headers, "Retry-After": str(max(1, math.ceil(window.retry_after)))},
        )

    def charge_soon(self, tenant: Tenant, tokens: int) -> None:
        """Charge a tenant's tokens off the response path, within CHARGE_DELAY_SECONDS; `close` charges the rest."""
        tpm = self.limits_of(tenant)[1]
        if tokens <= 0 or tpm is None:
            return
        pending = self._pending.get(tenant.name)
        self._pending[tenant.name] = (tenant, tpm, tokens + (pending[2] if pending else 0))
        if self._flush is None or self._flush.done():
            self._flush = asyncio.create_task(self.flush(CHARGE_DELAY_SECONDS))

    async def flush(self, delay: float = 0.0) -> None:
        """Charge every tenant's pending tokens (after `delay`, to gather the answers ending meanwhile)."""
        if delay:
            await asyncio.sleep(delay)
        pending, self._pending = self._pending, {}
        await asyncio.gather(*(self._charge(tenant, tpm, tokens) for tenant, tpm, tokens in pending.values()))

    async def _charge(self, tenant: Tenant, tpm: int, tokens: int) -> None:
        try:
            await self._redis(lambda: self._counters.charge(self._keys(tenant)[1], tpm, tokens))
        except _FAILURES as error:
            self.unavailable.labels("charge").inc()
            log.debug("token charge of %d skipped for %s: %r", tokens, tenant.name, error)

    async def close(self, timeout: float) -> None:
        if self._flush is not None:
            self._flush.cancel()
        try:
            async with asyncio.timeout(timeout):
                await self.flush()
        except TimeoutError:
            log.warning("token charges still pending at shutdown were dropped")
        await self._counters.close()
