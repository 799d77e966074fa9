"""Gateway overhead benchmark: added latency (p50/p99) against calling the stub engine directly, max requests/s
with the gateway pinned to one core, streaming and non-streaming, cache-hit latency (exact in memory and in Redis
on loopback, semantic in memory), what prefix routing over 8 replicas adds to a gateway that sends to the
Service (the 8 replicas are one stub on 8 loopback addresses), and what tenants cost: API-key authentication
(100 tenants in the tenants file) alone, and with per-tenant request and token quotas in Redis on loopback, each
paired against the same gateway without them. Prints a table.

    .venv/bin/python tests/bench/bench_gateway.py [--requests 2000] [--concurrency 4] [--seconds 5] [--no-semantic]
                                                  [--profile 25]

The stub engine and the gateway run as separate processes (gateway on CPU 0, stub and load generator on CPU 1
where the machine has two). Direct and gateway requests are interleaved in one run so both see the same machine
noise; "added" is gateway minus direct at the same percentile.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import pstats
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.redis_server import start_redis  # noqa: E402

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
API_KEY = "sk-bench-tenant-42"
GATEWAY_CPU, LOAD_CPU = 0, 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pin(pid: int, cpu: int) -> None:
    cpus = os.sched_getaffinity(0)
    if cpu in cpus and len(cpus) > 1:
        os.sched_setaffinity(pid, {cpu})


def start_stub(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-m", "tests.support.stub_upstream", "--port", str(port),
                                "--host", "0.0.0.0"], cwd=ROOT)
    pin(process.pid, LOAD_CPU)
    return process


def start_gateway(config: dict, workdir: str, profile: str | None = None) -> tuple[subprocess.Popen[bytes], str]:
    path = Path(workdir) / f"gateway-{config['port']}.json"
    path.write_text(json.dumps(config))
    script = Path(workdir) / f"gateway-{config['port']}.py"
    script.write_text("import argparse, sys\nfrom neuroscale.gateway.cli import main\n"
                      f"sys.exit(main(argparse.Namespace(config={str(path)!r}, host=None, port=None)))\n")
    profiler = ["-m", "cProfile", "-o", profile] if profile else []
    process = subprocess.Popen([sys.executable, *profiler, str(script)], cwd=ROOT, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(ROOT / "operator")})
    pin(process.pid, GATEWAY_CPU)
    return process, f"http://127.0.0.1:{config['port']}"


async def wait_ready(session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(300):
        try:
            async with session.get(url) as response:
                if response.status in (200, 405):
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


async def call(session: aiohttp.ClientSession, url: str, body: dict) -> tuple[float, float]:
    """(time to first byte of the answer, total) in seconds."""
    started = time.perf_counter()
    async with session.post(url, json=body) as response:
        first = None
        async for _ in response.content.iter_any():
            if first is None:
                first = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"{url} answered {response.status}")
    return first or 0.0, time.perf_counter() - started


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def paired(session: aiohttp.ClientSession, direct: str, gateway: str, body: dict, requests: int,
                 concurrency: int, field: int) -> tuple[list[float], list[float]]:
    """Interleaved direct and gateway calls at a fixed concurrency; `field` 0 = first byte, 1 = total."""
    direct_times: list[float] = []
    gateway_times: list[float] = []
    remaining = iter(range(requests))

    async def worker() -> None:
        for index in remaining:
            if index % 2:
                direct_times.append((await call(session, direct, body))[field])
            else:
                gateway_times.append((await call(session, gateway, body))[field])

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return direct_times, gateway_times


async def throughput(session: aiohttp.ClientSession, url: str, body: dict, seconds: float, concurrency: int) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call(session, url, body)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


async def hit_latency(session: aiohttp.ClientSession, url: str, store: dict, asks: list[dict]) -> dict[str, list[float]]:
    """Latencies grouped by the x-neuroscale-cache header (exact, semantic, miss)."""
    await call(session, url, store)
    await asyncio.sleep(0.5)  # the gateway writes an answer to the cache after it went out
    by_kind: dict[str, list[float]] = {}
    for ask in asks:
        started = time.perf_counter()
        async with session.post(url, json=ask) as response:
            await response.read()
            kind = response.headers.get("x-neuroscale-cache", "?")
        by_kind.setdefault(kind, []).append(time.perf_counter() - started)
    return by_kind


def paraphrases(count: int) -> list[dict]:
    """Distinct wordings of one question (extra spaces), so every semantic lookup embeds a new text."""
    words = "what is the capital city of france".split()
    asks = []
    for index in range(count):
        spaced = " ".join(word + " " * (1 + (index >> position) % 2) for position, word in enumerate(words)).strip()
        asks.append({"model": "cascade", "temperature": 0, "messages": [{"role": "user", "content": spaced + "?" * (1 + index // 128)}]})
    return asks


def summary(by_kind: dict[str, list[float]]) -> str:
    return "; ".join(f"{kind} x{len(times)}: {pct(times, .5):.3f} / {pct(times, .99):.3f}" for kind, times in sorted(by_kind.items()))


def gateway_config(port: int, upstream: str, cache: dict | None = None, routing: dict | None = None,
                   **extra: object) -> dict:
    return {"model_name": "cascade", "host": "127.0.0.1", "port": port, "cache": cache,
            "tiers": [{"kind": "openai", "name": "engine", "url": upstream, "model": "stub", "routing": routing}],
            **extra}


def tenants_file(workdir: str) -> str:
    """100 tenants, the benchmark's key belonging to one in the middle (every key is compared on each request)."""
    lines = ["tenants:"]
    for index in range(100):
        key = API_KEY if index == 42 else f"sk-other-{index}"
        lines += [f"  team-{index}:", f"    keySha256: [{hashlib.sha256(key.encode()).hexdigest()}]"]
    path = Path(workdir) / "tenants.yaml"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


ROUTED_REPLICAS = 8
# A conversation on its third turn behind a system prompt of ~1,500 characters: the prefix key hashes its opening.
CONVERSATION = [{"role": "system", "content": "You answer questions about European geography. " * 32},
                {"role": "user", "content": "What is the capital of France?"},
                {"role": "assistant", "content": "Paris."},
                {"role": "user", "content": "And of Italy?"}]


async def run(args: argparse.Namespace) -> None:
    workdir = tempfile.mkdtemp(prefix="neuroscale-bench-")
    stub_port = free_port()
    processes = [start_stub(stub_port)]
    upstream = f"http://127.0.0.1:{stub_port}/v1"
    redis = start_redis()
    caches = {"off": None, "exact-memory": {"mode": "exact"},
              "exact-redis": {"mode": "exact", "backend": "redis", "redis_url": redis.url}}
    if args.semantic:
        caches["semantic-memory"] = {"mode": "semantic"}
    gateways = {}
    profile = str(Path(workdir) / "gateway.prof") if args.profile else None
    for name, cache in caches.items():
        process, url = start_gateway(gateway_config(free_port(), upstream, cache), workdir, profile if name == "off" else None)
        processes.append(process)
        gateways[name] = url
    routing = {"policy": "prefix", "service": "engine", "namespace": "bench",
               "static_replicas": [f"127.0.0.{index + 1}:{stub_port}" for index in range(ROUTED_REPLICAS)]}
    process, gateways["routed"] = start_gateway(gateway_config(free_port(), upstream, routing=routing), workdir)
    processes.append(process)
    auth = {"mode": "api_keys", "keys_file": tenants_file(workdir)}
    quotas = {"redis_url": redis.url, "requests_per_minute": 10**8, "tokens_per_minute": 10**10}
    for name, extra in (("auth", {"auth": auth}), ("auth+quota", {"auth": auth, "quotas": quotas})):
        process, url = start_gateway(gateway_config(free_port(), upstream, None, **extra), workdir)
        processes.append(process)
        gateways[name] = url
    rows: list[tuple[str, str]] = []
    connector = aiohttp.TCPConnector(limit=0)
    try:
        # Every call carries the key; the stub and the gateways without auth ignore it.
        async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Bearer {API_KEY}"}) as session:
            await wait_ready(session, upstream + "/chat/completions")
            for url in gateways.values():
                await wait_ready(session, url + "/healthz")
            direct, through = upstream + "/chat/completions", gateways["off"] + "/v1/chat/completions"
            plain = {"model": "cascade", "messages": QUESTION}
            streaming = {**plain, "stream": True}
            await paired(session, direct, through, plain, 200, args.concurrency, 1)  # warm-up
            for label, body, field in (("non-streaming total", plain, 1), ("streaming first byte", streaming, 0),
                                       ("streaming total", streaming, 1)):
                d, g = await paired(session, direct, through, body, args.requests, args.concurrency, field)
                rows.append((f"{label}: direct p50 / p99 ms", f"{pct(d, .5):.3f} / {pct(d, .99):.3f}"))
                rows.append((f"{label}: gateway p50 / p99 ms", f"{pct(g, .5):.3f} / {pct(g, .99):.3f}"))
                rows.append((f"{label}: ADDED p50 / p99 ms", f"{pct(g, .5) - pct(d, .5):.3f} / {pct(g, .99) - pct(d, .99):.3f}"))
            service, routed = through, gateways["routed"] + "/v1/chat/completions"
            conversation = {"model": "cascade", "messages": CONVERSATION}
            await paired(session, service, routed, conversation, 200, args.concurrency, 1)  # warm-up
            for label, body, field in (("non-streaming total", conversation, 1),
                                       ("streaming first byte", {**conversation, "stream": True}, 0)):
                s, r = await paired(session, service, routed, body, args.requests, args.concurrency, field)
                rows.append((f"prefix routing, {label}: via Service / routed p50 ms",
                             f"{pct(s, .5):.3f} / {pct(r, .5):.3f}"))
                rows.append((f"prefix routing, {label}: ADDED p50 / p99 ms",
                             f"{pct(r, .5) - pct(s, .5):.3f} / {pct(r, .99) - pct(s, .99):.3f}"))
            for label, body in (("non-streaming", plain), ("streaming", streaming)):
                direct_rps = await throughput(session, direct, body, args.seconds, 64)
                gateway_rps = await throughput(session, through, body, args.seconds, 64)
                rows.append((f"max req/s {label}: direct / gateway (1 core)",
                             f"{direct_rps:.0f} / {gateway_rps:.0f} ({gateway_rps / direct_rps:.2f}x)"))
            for name in ("auth", "auth+quota"):
                tenant = gateways[name] + "/v1/chat/completions"
                for label, body, field in (("non-streaming total", plain, 1), ("streaming first byte", streaming, 0)):
                    g, t = await paired(session, through, tenant, body, args.requests, args.concurrency, field)
                    rows.append((f"{name}, {label}: gateway / with {name} p50 / p99 ms",
                                 f"{pct(g, .5):.3f} / {pct(g, .99):.3f} → {pct(t, .5):.3f} / {pct(t, .99):.3f}"))
                    rows.append((f"{name}, {label}: ADDED by {name} p50 / p99 ms",
                                 f"{pct(t, .5) - pct(g, .5):.3f} / {pct(t, .99) - pct(g, .99):.3f}"))
                gateway_rps = await throughput(session, through, plain, args.seconds, 64)
                tenant_rps = await throughput(session, tenant, plain, args.seconds, 64)
                rows.append((f"max req/s non-streaming: gateway / with {name} (1 core)",
                             f"{gateway_rps:.0f} / {tenant_rps:.0f} ({tenant_rps / gateway_rps:.2f}x)"))
            baseline = [t for _, t in [await call(session, direct, plain) for _ in range(args.requests // 4)]]
            rows.append(("upstream direct p50 / p99 ms (reference)", f"{pct(baseline, .5):.3f} / {pct(baseline, .99):.3f}"))
            deterministic = {**plain, "temperature": 0}
            hits = args.requests // 4
            for name in caches:
                if name == "off":
                    continue
                url = gateways[name] + "/v1/chat/completions"
                by_kind = await hit_latency(session, url, deterministic, [deterministic] * hits)
                rows.append((f"cache hit {name}, same request p50 / p99 ms", summary(by_kind)))
                if name.startswith("semantic"):
                    by_kind = await hit_latency(session, url, deterministic, paraphrases(min(hits, 200)))
                    rows.append((f"cache hit {name}, new wording p50 / p99 ms", summary(by_kind)))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)
        redis.stop()
    width = max(len(label) for label, _ in rows)
    print(f"\ngateway benchmark: {args.requests} paired requests at concurrency {args.concurrency}, "
          f"{os.cpu_count()} CPUs, gateway pinned to CPU {GATEWAY_CPU}")
    for label, value in rows:
        print(f"  {label.ljust(width)}  {value}")
    if profile:
        print("\nwhere the gateway's CPU time goes (cProfile, the cache-less gateway, own time):")
        pstats.Stats(profile).sort_stats("tottime").print_stats(args.profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--no-semantic", dest="semantic", action="store_false")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="run the cache-less gateway under cProfile and print its N costliest functions")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
