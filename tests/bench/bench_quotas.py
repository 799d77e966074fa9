"""Quota check cost on a Redis on loopback: the gateway's one-script sliding window (admit on the response path,
token charge after), against the `limits` package's sliding-window counter doing the same work (read the request
and token windows, count the request, charge the tokens) when that package is installed. Prints a table.

    .venv/bin/python tests/bench/bench_quotas.py [--requests 3000]

The two run in the same process one after the other, against the same Redis; "CPU" is the gateway process's CPU
time per request including the charges, which is what limits a one-core gateway's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "operator"))

from prometheus_client import CollectorRegistry  # noqa: E402

from neuroscale.gateway.auth import Tenant  # noqa: E402
from neuroscale.gateway.config import QuotaConfig  # noqa: E402
from neuroscale.gateway.quotas import Quotas  # noqa: E402
from tests.support.redis_server import start_redis  # noqa: E402

RPM, TPM, TOKENS = 10**8, 10**10, 30


async def measure(admit: Callable[[], Awaitable[object]], charge: Callable[[], Awaitable[object]],
                  requests: int) -> tuple[float, float, float]:
    """(admit p50 ms, admit p99 ms, CPU ms per request including the charge)."""
    for _ in range(200):
        await admit()
        await charge()
    latencies = []
    cpu = time.process_time()
    for _ in range(requests):
        started = time.perf_counter()
        await admit()
        latencies.append(time.perf_counter() - started)
        await charge()
    cpu = (time.process_time() - cpu) / requests * 1000
    latencies.sort()
    return latencies[len(latencies) // 2] * 1000, latencies[int(len(latencies) * 0.99)] * 1000, cpu


async def run(requests: int) -> None:
    redis = start_redis()
    rows = []
    try:
        config = QuotaConfig(redis_url=redis.url, requests_per_minute=RPM, tokens_per_minute=TPM, timeout_seconds=1)
        quotas, tenant = Quotas(config, CollectorRegistry()), Tenant("team-a")
        p50, p99, cpu = await measure(lambda: quotas.admit(tenant), lambda: quotas._charge(tenant, TPM, TOKENS),
                                      requests)
        rows.append(("gateway quotas (one Lua script each way)", p50, p99, cpu))
        await quotas.close(1)
        try:
            from limits import RateLimitItemPerMinute
            from limits.aio.storage import RedisStorage
            from limits.aio.strategies import SlidingWindowCounterRateLimiter
        except ImportError:
            print("(the limits package is not installed: its row is left out)")
        else:
            limiter = SlidingWindowCounterRateLimiter(RedisStorage("async+" + redis.url, implementation="redispy"))
            rpm, tpm = RateLimitItemPerMinute(RPM), RateLimitItemPerMinute(TPM)

            async def admit() -> object:
                return await asyncio.gather(limiter.get_window_stats(rpm, "r"), limiter.get_window_stats(tpm, "t"),
                                            limiter.hit(rpm, "r"))

            p50, p99, cpu = await measure(admit, lambda: limiter.hit(tpm, "t", cost=TOKENS), requests)
            rows.append(("limits SlidingWindowCounterRateLimiter", p50, p99, cpu))
    finally:
        redis.stop()
    print(f"\nquota cost per request, {requests} sequential requests, Redis on loopback, both limits set")
    print(f"  {'':42s}  admit p50 / p99 ms   CPU ms per request")
    for label, p50, p99, cpu in rows:
        print(f"  {label:42s}  {p50:.3f} / {p99:.3f}        {cpu:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    asyncio.run(run(parser.parse_args().requests))


if __name__ == "__main__":
    main()
