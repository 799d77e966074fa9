"""Operator benchmark: reconcile latency of one ModelDeployment, API writes in a no-op resync, and the time and
peak memory to reconcile 1,000 ModelDeployments in one operator process. Prints a table.

    .venv/bin/python tests/bench/bench_operator.py [--latency-runs 20] [--fleet 1000] [--resync-periods 3]
                                                   [--no-tracemalloc] [--profile 30]

How it is measured. Three processes on loopback, so that the operator's figures are its own:
- the kmock Kubernetes emulator (tests/support/kube.py's, our CRDs declared) in a child process. Stock kmock scans
  its whole request log to route each request and every stored object to find one, so at 1,000 ModelDeployments it,
  not the operator, would be the bottleneck; the benchmark's emulator keeps only in-flight requests for routing and
  looks single objects up by key (same objects, same answers), and logs each request's method and path.
- the real operator (kopf + our handlers, via `running_operator`) in a second child process. Its writes come from
  `runtime.kube.writes`, its memory from /proc/self/status (VmHWM, the resident high-water mark, minus VmRSS just
  before the operator started) and from tracemalloc's peak (Python allocations since the operator started), its
  CPU time from /proc/<pid>/stat.
- this process posts ModelDeployments and polls the emulator over HTTP, as a user's kubectl would.

(a) latency: POST one ModelDeployment, poll every 5 ms until its status has a Sized condition and its Deployment
and Service exist; median and p95 over --latency-runs creations, one at a time.
(b) no-op resync: with those objects settled and a 2 s resync timer, count writes over --resync-periods periods,
both as the operator's client counts them and as the emulator received them (POST/PATCH/PUT/DELETE): both must
be zero.
(c) fleet: a fresh emulator and operator; POST --fleet ModelDeployments (20 at a time) and time from the first POST
until every one has a Sized condition, then count the Deployments and Services. Goals: under 60 s and 256 MiB.
tracemalloc slows allocation-heavy Python severalfold, so the fleet runs twice: once for time, CPU and RSS, once
more with tracemalloc for its peak (skip with --no-tracemalloc). --profile N samples the operator process with
py-spy (all threads: reconciles run in kopf's worker threads, which cProfile would not see) during the timed run
and prints the N functions with the most samples, inclusive.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing
import os
import shutil
import subprocess
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support.factories import make_model_deployment  # noqa: E402
from tests.support.kube import NAMESPACE, Emulator, declare_resources, write_kubeconfig  # noqa: E402

MDS = f"/apis/neuroscale.io/v1alpha1/namespaces/{NAMESPACE}/modeldeployments"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
SERVICES = f"/api/v1/namespaces/{NAMESPACE}/services"
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")
TIME_GOAL_S, MEMORY_GOAL_MIB = 60.0, 256.0


class BenchEmulator(Emulator):
    """The tests' emulator, made to stay fast at thousands of objects and tens of thousands of requests.

    Stock kmock matches each request against its reactions by scanning the whole request log, and finds an object
    by scanning every stored object: both grow with the run and would make the emulator, not the operator, the
    bottleneck. Here the log holds only the requests in flight (what matching needs), single objects are looked
    up by key, and every request's method and path go to a compact log of our own that the benchmark reads.
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.received: list[tuple[str, str]] = []

    async def _handle(self, request: Any) -> Any:
        self.received.append((request.method.value if request.method else "?", request.url.path))
        try:
            return await super()._handle(request)
        finally:
            in_flight = self._requests
            for index, seen in enumerate(in_flight):
                if seen is request:
                    del in_flight[index]
                    break

    def _KubernetesEmulator__get_objs(self, request: Any, strict: bool) -> list[Any]:
        if strict and request.name is not None:
            obj = self.objects._objects.get((request.resource, request.namespace, request.name))
            return [] if obj is None else [obj]
        return super()._KubernetesEmulator__get_objs(request, strict)


def _emulator_main(conn: Connection) -> None:
    asyncio.run(_serve_emulator(conn))


async def _serve_emulator(conn: Connection) -> None:
    import kmock

    async with BenchEmulator() as server, kmock.Server(server):
        declare_resources(server)
        conn.send(str(server.url))
        loop = asyncio.get_running_loop()
        while (command := await loop.run_in_executor(None, conn.recv)) != "stop":
            conn.send(_request_log(server, since=command))


def _request_log(server: BenchEmulator, since: int) -> tuple[int, dict[str, int], list[str], dict[str, int]]:
    """(requests received so far, write requests since `since` by method, a few of them, all of them by shape)."""
    window = server.received[since:]
    writes = [(method, path) for method, path in window if method in WRITE_METHODS]
    return len(server.received), dict(Counter(method for method, _ in writes)), [
        f"{method} {path}" for method, path in writes[:5]], dict(Counter(_shape(m, p) for m, p in window))


def _shape(method: str, path: str) -> str:
    """`GET deployments/<name>`: a request with the object's name left out, to count requests by kind."""
    parts = path.strip("/").split("/")
    if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
        rest = parts[parts.index("namespaces") + 2:]
        return f"{method} {rest[0]}" + ("/<name>" if len(rest) > 1 else "") + "".join(f"/{r}" for r in rest[2:])
    return f"{method} {path}"


def _operator_main(kubeconfig: str, resync_seconds: float, trace_memory: bool, conn: Connection) -> None:
    asyncio.run(_operate(Path(kubeconfig), resync_seconds, trace_memory, conn))


async def _operate(kubeconfig: Path, resync_seconds: float, trace_memory: bool, conn: Connection) -> None:
    from neuroscale.runtime import OperatorConfig
    from tests.support.kube import running_operator

    # kopf's own log (and its shutdown chatter) goes next to the kubeconfig, not into the table.
    logging.basicConfig(filename=kubeconfig.with_name("operator.log"), level=logging.WARNING)
    rss_before = _proc_status_mib("VmRSS")
    if trace_memory:
        tracemalloc.start()
    config = OperatorConfig(resync_seconds=resync_seconds, autoscale_interval_seconds=60.0)
    async with running_operator(kubeconfig, config) as runtime:
        conn.send("ready")
        loop = asyncio.get_running_loop()
        while (await loop.run_in_executor(None, conn.recv)) != "stop":
            peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace_memory else None
            conn.send({"writes": dict(runtime.kube.writes.counts), "tracemalloc_peak_mib": peak,
                       "rss_before_mib": rss_before, "hwm_mib": _proc_status_mib("VmHWM")})


def _proc_status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


class Child:
    """A spawned process we talk to over a pipe."""

    def __init__(self, target: Any, *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child_end = context.Pipe()
        self.process = context.Process(target=target, args=(*args, child_end), daemon=True)
        self.process.start()

    async def ask(self, message: Any, timeout: float = 120.0) -> Any:
        loop = asyncio.get_running_loop()
        if message is not None:
            self.conn.send(message)
        if not await loop.run_in_executor(None, self.conn.poll, timeout):
            raise RuntimeError(f"no answer from {self.process.name} within {timeout}s")
        return self.conn.recv()

    def cpu_seconds(self) -> float:
        """User plus system CPU time the process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.is_alive():
            self.conn.send("stop")
            self.process.join(30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


class Cluster:
    """An emulator process, an operator process against it, and an HTTP session for playing the user."""

    def __init__(self, workdir: Path, resync_seconds: float, trace_memory: bool = False) -> None:
        self.workdir, self.resync_seconds, self.trace_memory = workdir, resync_seconds, trace_memory

    async def __aenter__(self) -> Cluster:
        self.emulator = Child(_emulator_main)
        self.url = await self.emulator.ask(None, timeout=60)
        kubeconfig = write_kubeconfig(self.workdir / "kubeconfig", self.url)
        self.session = aiohttp.ClientSession(self.url)
        self.operator = Child(_operator_main, str(kubeconfig), self.resync_seconds, self.trace_memory)
        await self.operator.ask(None, timeout=60)
        return self

    async def __aexit__(self, *_: Any) -> None:
        await self.session.close()
        self.operator.stop()
        self.emulator.stop()

    async def create(self, name: str) -> None:
        async with self.session.post(MDS, json=make_model_deployment(name)) as response:
            if response.status >= 300:
                raise RuntimeError(f"POST {name}: {response.status} {await response.text()}")

    async def get(self, path: str) -> dict[str, Any] | None:
        async with self.session.get(path) as response:
            return await response.json() if response.status == 200 else None


def sized(md: dict[str, Any] | None) -> bool:
    return md is not None and any(c.get("type") == "Sized" for c in (md.get("status") or {}).get("conditions", ()))


async def reconcile_latency(cluster: Cluster, runs: int) -> list[float]:
    latencies = []
    for index in range(runs):
        name = f"latency-{index}"
        started = time.perf_counter()
        await cluster.create(name)
        while not (sized(await cluster.get(f"{MDS}/{name}")) and await cluster.get(f"{DEPLOYMENTS}/{name}")
                   and await cluster.get(f"{SERVICES}/{name}")):
            if time.perf_counter() - started > 30:
                raise RuntimeError(f"{name} not reconciled within 30 s")
            await asyncio.sleep(0.005)
        latencies.append(time.perf_counter() - started)
    return latencies


async def noop_resync_writes(cluster: Cluster, periods: int) -> tuple[dict, dict, list[str], float, int]:
    await asyncio.sleep(2 * cluster.resync_seconds)  # the first resyncs settle anything creation raced with
    before = (await cluster.operator.ask("report"))["writes"]
    log_start, *_ = await cluster.emulator.ask(0)
    started = time.perf_counter()
    await asyncio.sleep(periods * cluster.resync_seconds + 0.5)
    after = (await cluster.operator.ask("report"))["writes"]
    log_end, emulator_writes, samples, _ = await cluster.emulator.ask(log_start)
    client_writes = {verb: after.get(verb, 0) - before.get(verb, 0) for verb in after
                     if after.get(verb, 0) != before.get(verb, 0)}
    return client_writes, emulator_writes, samples, time.perf_counter() - started, log_end - log_start


async def reconcile_fleet(cluster: Cluster, count: int, concurrency: int = 20) -> dict[str, float]:
    names = [f"fleet-{index:04d}" for index in range(count)]
    pending = asyncio.Queue()
    for name in names:
        pending.put_nowait(name)

    async def poster() -> None:
        while not pending.empty():
            await cluster.create(pending.get_nowait())

    cpu = (cluster.operator.cpu_seconds(), cluster.emulator.cpu_seconds())
    requests_before, *_ = await cluster.emulator.ask(0)
    started = time.perf_counter()
    await asyncio.gather(*(poster() for _ in range(concurrency)))
    while True:
        listing = await cluster.get(MDS) or {"items": []}
        if sum(sized(md) for md in listing["items"]) >= count:
            break
        if time.perf_counter() - started > 900:
            raise RuntimeError("the fleet was not reconciled within 15 minutes")
        await asyncio.sleep(0.25)
    elapsed = time.perf_counter() - started
    requests_after, _, _, shapes = await cluster.emulator.ask(requests_before)
    return {
        "shapes": shapes,
        "elapsed": elapsed,
        "operator_cpu": cluster.operator.cpu_seconds() - cpu[0],
        "emulator_cpu": cluster.emulator.cpu_seconds() - cpu[1],
        "requests": requests_after - requests_before,
        "deployments": len((await cluster.get(DEPLOYMENTS) or {"items": []})["items"]),
        "services": len((await cluster.get(SERVICES) or {"items": []})["items"]),
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


class Sampler:
    """py-spy recording every thread of a process into a raw (collapsed-stack) file, while in the block."""

    def __init__(self, pid: int, output: Path) -> None:
        executable = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        if not Path(executable).exists():
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.output = output
        self.process = subprocess.Popen([executable, "record", "--pid", str(pid), "--rate", "100", "--format", "raw",
                                         "--output", str(output), "--nonblocking"], stdout=subprocess.DEVNULL)

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *_: Any) -> None:
        self.process.send_signal(subprocess.signal.SIGINT)
        self.process.wait(60)

    def top(self, count: int) -> list[tuple[float, str]]:
        inclusive: Counter[str] = Counter()
        total = 0
        for line in self.output.read_text().splitlines():
            stack, _, samples = line.rpartition(" ")
            total += int(samples)
            for frame in set(stack.split(";")):
                inclusive[frame.replace(str(ROOT) + "/", "").split("site-packages/")[-1]] += int(samples)
        return [(100 * n / max(total, 1), frame) for frame, n in inclusive.most_common(count)]


async def measure_fleet(workdir: Path, count: int, trace_memory: bool, profile: int) -> tuple[dict, dict, list]:
    async with Cluster(workdir, resync_seconds=300.0, trace_memory=trace_memory) as cluster:
        if profile:
            with Sampler(cluster.operator.process.pid, workdir / "operator.pyspy") as sampler:
                fleet = await reconcile_fleet(cluster, count)
            top = sampler.top(profile)
        else:
            fleet, top = await reconcile_fleet(cluster, count), []
        return fleet, await cluster.operator.ask("report"), top


async def main(args: argparse.Namespace) -> None:
    rows: list[tuple[str, str, str]] = []
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        async with Cluster(workdir, resync_seconds=2.0) as cluster:
            latencies = await reconcile_latency(cluster, args.latency_runs)
            client, emulator, samples, window, seen = await noop_resync_writes(cluster, args.resync_periods)
        p95 = statistics.quantiles(latencies, n=20, method="inclusive")[18] if len(latencies) >= 2 else latencies[0]
        rows += [
            ("(a) POST → Sized + children, median", f"{statistics.median(latencies) * 1000:.0f} ms",
             f"{len(latencies)} creations"),
            ("(a) POST → Sized + children, p95", f"{p95 * 1000:.0f} ms", f"max {max(latencies) * 1000:.0f} ms"),
            ("(b) no-op resync: runtime.kube.writes", str(sum(client.values())),
             f"{verdict(not client)} (goal 0) over {window:.1f} s = {args.resync_periods} resyncs of "
             f"{args.latency_runs} objects {client or ''}".rstrip()),
            ("(b) no-op resync: emulator write requests", str(sum(emulator.values())),
             f"{verdict(not emulator)} (goal 0) of {seen} requests received {emulator or ''} {samples or ''}".rstrip()),
        ]
        fleet, report, top = await measure_fleet(workdir, args.fleet, trace_memory=False, profile=args.profile)
        hwm_delta = report["hwm_mib"] - report["rss_before_mib"]
        rows += [
            (f"(c) {args.fleet} ModelDeployments reconciled", f"{fleet['elapsed']:.1f} s",
             f"{verdict(fleet['elapsed'] < TIME_GOAL_S)} (goal < {TIME_GOAL_S:.0f} s); {fleet['deployments']} "
             f"Deployments, {fleet['services']} Services, {sum(report['writes'].values())} operator writes"
             + ("; py-spy attached" if args.profile else "")),
            ("(c) CPU time: operator / emulator", f"{fleet['operator_cpu']:.1f} s",
             f"/ {fleet['emulator_cpu']:.1f} s; {fleet['requests']} API requests "
             f"({fleet['requests'] / args.fleet:.1f} per ModelDeployment)"),
            ("(c) RSS high-water mark − RSS at start", f"{hwm_delta:.0f} MiB",
             f"{verdict(hwm_delta < MEMORY_GOAL_MIB)} (goal < {MEMORY_GOAL_MIB:.0f} MiB; "
             f"VmHWM {report['hwm_mib']:.0f} MiB, start {report['rss_before_mib']:.0f} MiB)"),
        ]
        if args.tracemalloc:
            traced, traced_report, _ = await measure_fleet(workdir, args.fleet, trace_memory=True, profile=0)
            peak = traced_report["tracemalloc_peak_mib"]
            rows.append(("(c) tracemalloc peak (second run)", f"{peak:.0f} MiB",
                         f"{verdict(peak < MEMORY_GOAL_MIB)} (goal < {MEMORY_GOAL_MIB:.0f} MiB); that run took "
                         f"{traced['elapsed']:.1f} s with tracemalloc on"))
    width = max(len(row[0]) for row in rows)
    print(f"\n{'measure'.ljust(width)}  {'value':>10}  notes")
    for label, value, note in rows:
        print(f"{label.ljust(width)}  {value:>10}  {note}")
    print("\nAPI requests per ModelDeployment during the timed fleet run (emulator log):")
    for shape, count in sorted(fleet["shapes"].items(), key=lambda item: -item[1])[:12]:
        print(f"  {count / args.fleet:6.2f}  {shape}")
    if top:
        print(f"\nOperator process, py-spy samples (all threads, inclusive) during the timed fleet run:")
        for share, frame in top:
            print(f"  {share:5.1f}%  {frame}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--fleet", type=int, default=1000)
    parser.add_argument("--resync-periods", type=int, default=3)
    parser.add_argument("--no-tracemalloc", dest="tracemalloc", action="store_false",
                        help="skip the second fleet run that measures tracemalloc's peak")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="py-spy the timed fleet run, print top N")
    asyncio.run(main(parser.parse_args()))
