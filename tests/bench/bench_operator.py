"""Operator benchmark, against the kmock emulator and against a real Kubernetes control plane, side by side:
reconcile latency of one ModelDeployment, API writes in a no-op resync, and the time, CPU, peak memory and API
requests to reconcile a fleet of ModelDeployments (1,000 by default) in one operator process. Prints one table with
a column per backend and, where both ran, the real/emulator ratio (the machine is shared and noisy: read ratios,
not absolute figures).

    .venv/bin/python tests/bench/bench_operator.py [--backend both|real|emulator] [--latency-runs 20]
                                                   [--fleet 1000] [--resync-periods 3] [--no-tracemalloc]
                                                   [--profile 30] [--fleet-timeout 1800]

The processes, on loopback, so that the operator's figures are its own:
- the backend. `emulator`: the kmock Kubernetes emulator (tests/support/kube.py's, our CRDs declared) in a child
  process. Stock kmock scans its whole request log to route each request and every stored object to find one, so at
  1,000 ModelDeployments it, not the operator, would be the bottleneck; the benchmark's emulator keeps only
  in-flight requests for routing and looks single objects up by key (same objects, same answers). kmock has no
  server-side apply: the benchmark's emulator takes a PATCH with Content-Type application/apply-patch+yaml as
  create-or-merge (the object is created when absent, else the applied fields are merged in) and records the applied
  fields in `metadata.managedFields` under the request's fieldManager (every map key, lists owned whole), so the
  operator's "nothing would change, skip the apply" check works as it does against a real server. It counts every
  request it receives. `real`: tests/support/controlplane.py, a fresh one per phase (etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler, kwok with 8 fake nodes, 6 of them inf2/trn1), started with a /16
  Service range instead of its /24 (253 ClusterIPs: the 254th Service fails with "range is full"), our CRDs from
  crds/ created and Established, namespace ns1 created; it counts requests in `apiserver_request_total`, read from
  GET /metrics with the admin client certificate.
- the real operator (kopf + our handlers, `tests.support.kube.operator_task`, its KubeClient from
  `neuroscale.k8s.client.load_config` as in production) in a second child process, watching ns1. Its writes come
  from `runtime.kube.writes` (the operator client's own counter). The benchmark also counts, in that process, every
  request the operator sends: the KubeClient's (its ApiClient's `call_api`) and kopf's (aiohttp's
  `ClientSession._request`), classified by verb and resource as the API server labels them (GET/LIST/WATCH/POST/
  PUT/PATCH/APPLY/DELETE). Its memory comes from /proc/self/status (VmHWM, the resident high-water mark, minus
  VmRSS just before the operator started) and from tracemalloc's peak (Python allocations since the operator
  started), its CPU time from /proc/<pid>/stat.
- this process posts ModelDeployments, polls and watches the backend over HTTP as a user's kubectl would, and
  counts its own requests, so that they can be told apart from the operator's and the control plane's.

(a) latency: POST one ModelDeployment, poll every 5 ms (GET it, its Deployment, its Service) until its status has
a Sized condition and both children exist; median and p95 over --latency-runs creations, one at a time, with a 2 s
resync.
(b) no-op resync: with those objects in place, wait until no write has been made for two resync periods (the
Deployments' rollouts, on the real server, change status for a few seconds: the operator follows them, which is
not resync work; capped at 90 s), then count writes over --resync-periods periods of 2 s. Three counts, all goals 0:
the operator client's counter (`runtime.kube.writes`); every write the operator process sent, kopf's included
(the benchmark's per-process count above); the backend's own count of write requests (POST, PUT, PATCH, APPLY,
DELETE, DELETECOLLECTION) to the resources the operator writes (our three kinds, Deployments, Services,
PodDisruptionBudgets, ServiceAccounts, ConfigMaps, NetworkPolicies, Events) except the built-in kinds' status
subresources, which the controller-manager and kwok write: the emulator's request log, `apiserver_request_total`
on the real server. The reads the resync makes are reported next to them.
(c) fleet: a fresh backend and operator (resync every 300 s, so only creation is measured); POST --fleet
ModelDeployments (20 at a time) while watching ModelDeployments, and time from the first POST until every one has
a Sized condition, then until a LIST shows every Deployment and Service (they are applied before the status is
written, so this adds one LIST each). CPU seconds: the operator process, and the backend's (the emulator process;
the sum of the control plane's five processes, which also run the Deployment, ReplicaSet, scheduler and kwok work
that the emulator does not have). RSS: the operator's high-water mark minus its RSS at start. API requests per
ModelDeployment: the backend's count of all requests (every verb and resource) during the run, divided by
--fleet; then the part the operator sent (its own count above), the benchmark's own (POSTs, the watch, the LISTs)
and, by difference, everyone else (on the real server the controller-manager, scheduler and kwok; watches count
on the server only when they end). On the real server each Deployment makes a ReplicaSet and a Pod; the
benchmark's ModelDeployment sizes to inf2.8xlarge (one Neuron device) and the control plane has two such fake
nodes, so 2 pods run and every other one stays Pending (the count by phase is printed, from one LIST after the
counts are taken): the controller-manager's, scheduler's and API server's work for them is real, shares the
machine's cores with the operator, and is part of the time and the server's figures. Goals: under 60 s and
256 MiB. A fleet not settled within --fleet-timeout seconds, or that makes no progress for 3 minutes, is
reported INCOMPLETE, with how far it got.
tracemalloc slows allocation-heavy Python severalfold, so the fleet runs twice per backend: once for time, CPU,
RSS and requests, once more with tracemalloc for its peak (skip with --no-tracemalloc). --profile N samples the
operator process with py-spy (all threads: reconciles run in kopf's worker threads, which cProfile would not see)
during the timed run and prints the N functions with the most samples, inclusive.
Phases run in this order, each backend in turn: (a)+(b) emulator, (a)+(b) real, (c) emulator, (c) real, then
the tracemalloc runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import logging
import multiprocessing
import os
import re
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import controlplane  # noqa: E402
from tests.support.factories import make_model_deployment  # noqa: E402
from tests.support.kube import NAMESPACE, declare_resources, write_kubeconfig  # noqa: E402
from tests.support.kube_emulator import Emulator  # noqa: E402

MDS = f"/apis/neuroscale.io/v1alpha1/namespaces/{NAMESPACE}/modeldeployments"
DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
SERVICES = f"/api/v1/namespaces/{NAMESPACE}/services"
APPLY_PATCH = "application/apply-patch+yaml"
WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"})
# Resources the operator may write; the built-in kinds' status subresources are the controllers' and kwok's.
OPERATOR_RESOURCES = frozenset({"modeldeployments", "inferencecascades", "cachetiers", "deployments", "services",
                                "poddisruptionbudgets", "serviceaccounts", "configmaps", "networkpolicies", "events"})
BACKENDS = ("emulator", "real")
TIME_GOAL_S, MEMORY_GOAL_MIB = 60.0, 256.0
FLEET_TIMEOUT_S = 1800.0
STALL_S = 180.0  # a fleet that makes no progress for this long is reported as it stands
SERVICE_RANGE = "10.96.0.0/16"  # same first address (the API server's certificate names it) as the tests' /24

# (verb, group, resource, subresource), labelled as the API server's `apiserver_request_total` labels a request.
Key = tuple[str, str, str, str]


# --- classifying requests ----------------------------------------------------------------------------------------

def request_key(method: str, url: str, content_type: str | None = None) -> Key:
    """The verb and resource the API server would count a request under (a non-resource URL: resource "")."""
    split = urlsplit(url)
    parts = [p for p in split.path.split("/") if p]
    query = parse_qs(split.query)
    method = method.upper()
    if len(parts) >= 2 and parts[0] == "api":
        group, rest = "", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, rest = parts[1], parts[3:]
    else:
        return (method if method != "GET" else "GET", "", "", split.path or "/")
    if len(rest) > 2 and rest[0] == "namespaces":
        rest = rest[2:]
    if not rest:
        return (method, group, "", "discovery")
    resource, named, sub = rest[0], len(rest) > 1, "/".join(rest[2:])
    if method == "GET":
        verb = "WATCH" if query.get("watch", [""])[0] in ("true", "1") else ("GET" if named else "LIST")
    elif method == "PATCH":
        verb = "APPLY" if (content_type or "").startswith(APPLY_PATCH) else "PATCH"
    elif method == "DELETE" and not named:
        verb = "DELETECOLLECTION"
    else:
        verb = method
    return (verb, group, resource, sub)


def key_label(key: Key) -> str:
    verb, group, resource, sub = key
    if not resource:
        return f"{verb} {sub}" + (f" ({group or 'core'})" if sub == "discovery" else "")
    return f"{verb} {group + '/' if group else ''}{resource}{'/' + sub if sub else ''}"


def operator_writes(counts: Counter) -> Counter:
    """The write requests among `counts` that the operator could have made (built-ins' status left out)."""
    return Counter({key: n for key, n in counts.items() if n and key[0] in WRITE_VERBS
                    and key[2] in OPERATOR_RESOURCES
                    and not (key[1] in ("", "apps", "policy") and key[3] == "status")})


def delta(after: dict, before: dict) -> Counter:
    return Counter({key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)})


# --- the emulator backend (child process) ------------------------------------------------------------------------

def fields_v1(value: Any) -> dict[str, Any]:
    """A managedFields `fieldsV1` set owning every map key of `value`; lists (and scalars) are owned whole."""
    if isinstance(value, dict):
        return {f"f:{key}": fields_v1(item) for key, item in value.items()}
    return {}


class BenchEmulator(Emulator):
    """The tests' emulator, made to stay fast at thousands of objects and tens of thousands of requests, with
    server-side apply as create-or-merge.

    Stock kmock matches each request against its reactions by scanning the whole request log, and finds an object
    by scanning every stored object: both grow with the run and would make the emulator, not the operator, the
    bottleneck. Here the log holds only the requests in flight (what matching needs), single objects are looked
    up by key, and every request is counted by verb and resource, as the API server's metrics count them.
    """

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.counts: Counter = Counter()

    async def _handle(self, request: Any) -> Any:
        method = request.method.value if request.method else "?"
        content_type = request.headers.get("Content-Type")
        self.counts[request_key(method, str(request.url), content_type)] += 1
        try:
            if (method == "PATCH" and (content_type or "").startswith(APPLY_PATCH) and request.resource is not None
                    and request.name is not None and not request.subresource and isinstance(request.data, dict)):
                return await self._apply(request)
            return await super()._handle(request)
        finally:
            in_flight = self._requests
            for index, seen in enumerate(in_flight):
                if seen is request:
                    del in_flight[index]
                    break

    async def _apply(self, request: Any) -> Any:
        """Server-side apply, simplified: create the object when absent, else merge the applied fields in; record
        what this field manager applied in managedFields (replacing its previous entry)."""
        from aiohttp import web

        applied = copy.deepcopy(request.data)
        meta = applied.setdefault("metadata", {})
        meta.update(name=request.name, namespace=request.namespace)
        manager = request.params.get("fieldManager", "unknown")
        entry = {"manager": manager, "operation": "Apply", "apiVersion": applied.get("apiVersion", ""),
                 "fieldsType": "FieldsV1",
                 "fieldsV1": fields_v1({k: v for k, v in applied.items() if k not in ("apiVersion", "kind")})}
        key = (request.resource, request.namespace, request.name)
        async with self._lock:
            existing = self.objects._objects.get(key)
            if existing is None or existing.deleted:
                meta["managedFields"] = [entry]
                if existing is None:
                    self.objects[key] = applied
                else:
                    existing.create(applied)
                event = "ADDED"
            else:
                others = [m for m in (existing.get("metadata") or {}).get("managedFields") or ()
                          if not (m.get("manager") == manager and m.get("operation") == "Apply")]
                meta["managedFields"] = [*others, entry]
                existing.patch(applied)
                event = "MODIFIED"
            raw = self.objects._objects[key].raw
            await self._buses[request.resource].put({"type": event, "object": raw})
        return web.json_response(raw, status=201 if event == "ADDED" else 200)

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
        conn.send(str(server.url).rstrip("/"))
        loop = asyncio.get_running_loop()
        while (await loop.run_in_executor(None, conn.recv)) != "stop":
            conn.send(dict(server.counts))


# --- the operator (child process) --------------------------------------------------------------------------------

def _operator_main(kubeconfig: str, log_path: str, resync_seconds: float, trace_memory: bool,
                   conn: Connection) -> None:
    asyncio.run(_operate(kubeconfig, Path(log_path), resync_seconds, trace_memory, conn))


def _count_requests(kube: Any) -> Counter:
    """Count every request this process sends: the operator's KubeClient's and kopf's (aiohttp)."""
    counts: Counter = Counter()
    call_api = kube.api.call_api

    def counted_call_api(method: str, url: str, header_params: dict | None = None, *args: Any, **kwargs: Any) -> Any:
        counts[request_key(method, url, (header_params or {}).get("Content-Type"))] += 1
        return call_api(method, url, header_params, *args, **kwargs)

    kube.api.call_api = counted_call_api
    original = aiohttp.ClientSession._request

    async def counted_request(session: Any, method: str, str_or_url: Any, *args: Any, **kwargs: Any) -> Any:
        headers = kwargs.get("headers") or {}
        counts[request_key(method, str(str_or_url), headers.get("Content-Type"))] += 1
        return await original(session, method, str_or_url, *args, **kwargs)

    aiohttp.ClientSession._request = counted_request
    return counts


async def _operate(kubeconfig: str, log_path: Path, resync_seconds: float, trace_memory: bool,
                   conn: Connection) -> None:
    os.environ["KUBECONFIG"] = kubeconfig
    from neuroscale.k8s.client import KubeClient, load_config
    from neuroscale.runtime import OperatorConfig, Runtime
    from tests.e2e.cluster import login_as
    from tests.support.kube import operator_task

    # kopf's own log (and its shutdown chatter) goes to the work directory, not into the table.
    logging.basicConfig(filename=log_path, level=logging.WARNING)
    rss_before = _proc_status_mib("VmRSS")
    if trace_memory:
        tracemalloc.start()
    config = OperatorConfig(resync_seconds=resync_seconds, autoscale_interval_seconds=60.0)
    api = load_config()
    runtime = Runtime(kube=KubeClient(api), config=config)
    requests = _count_requests(runtime.kube)
    async with operator_task(runtime, login_as(api), [NAMESPACE], start_timeout=60):
        conn.send("ready")
        loop = asyncio.get_running_loop()
        while (await loop.run_in_executor(None, conn.recv)) != "stop":
            peak = tracemalloc.get_traced_memory()[1] / 2**20 if trace_memory else None
            conn.send({"writes": dict(runtime.kube.writes.counts), "requests": dict(requests),
                       "tracemalloc_peak_mib": peak, "rss_before_mib": rss_before,
                       "hwm_mib": _proc_status_mib("VmHWM")})


def _proc_status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(OSError):
                self.conn.send("stop")
            self.process.join(30)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join()


# --- backends ----------------------------------------------------------------------------------------------------

class EmulatorBackend:
    name = "emulator"

    async def start(self, workdir: Path) -> None:
        self.child = Child(_emulator_main)
        self.url = await self.child.ask(None, timeout=60)
        self.kubeconfig = write_kubeconfig(workdir / "kubeconfig", self.url)
        self.ssl: ssl.SSLContext | None = None

    def stop(self) -> None:
        self.child.stop()

    def cpu_seconds(self) -> dict[str, float]:
        return {"emulator": self.child.cpu_seconds()}

    async def request_counts(self, session: aiohttp.ClientSession) -> Counter:
        return Counter(await self.child.ask("counts"))

    def md_body(self, name: str) -> dict[str, Any]:
        return make_model_deployment(name)  # the emulator assigns no uid; kopf needs one


class BenchControlPlane(controlplane.ControlPlane):
    """The tests' control plane with a /16 Service range: its /24 holds 253 ClusterIPs, fewer than a fleet needs
    (past them, creating a Service fails with "failed to allocate a serviceIP: range is full"); EKS gives a /16."""

    def _args(self, name: str) -> list[str]:
        return [f"--service-cluster-ip-range={SERVICE_RANGE}" if arg.startswith("--service-cluster-ip-range=")
                else arg for arg in super()._args(name)]


class RealBackend:
    name = "real"

    async def start(self, workdir: Path) -> None:
        self.plane = BenchControlPlane(bin_dir=controlplane.binaries(), work=workdir / "control-plane")
        try:
            await asyncio.to_thread(self.plane.start)
        except BaseException:
            self.plane.stop()
            raise
        self.url, self.kubeconfig = self.plane.url, self.plane.kubeconfig
        certs = self.plane.certs
        self.ssl = ssl.create_default_context(cafile=str(certs.ca))
        self.ssl.load_cert_chain(certs.path("admin.crt"), certs.path("admin.key"))

    async def prepare(self, session: aiohttp.ClientSession) -> None:
        """Our CRDs created and Established, their kinds served, namespace ns1 created."""
        crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        names = []
        for path in sorted((ROOT / "crds").glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            async with session.post(crds, json=crd) as response:
                if response.status >= 300:
                    raise RuntimeError(f"CRD {path.name}: {response.status} {await response.text()}")
            names.append(crd["metadata"]["name"])
        async with session.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}}) as response:
            if response.status >= 300:
                raise RuntimeError(f"namespace: {response.status} {await response.text()}")
        deadline = time.monotonic() + 60
        for name in names:
            while True:
                async with session.get(f"{crds}/{name}") as response:
                    crd = await response.json()
                if any(c["type"] == "Established" and c["status"] == "True"
                       for c in (crd.get("status") or {}).get("conditions", ())):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"CRD {name} not Established within 60 s")
                await asyncio.sleep(0.2)
        while True:  # discovery serves the kind (kopf reads discovery once, at start)
            async with session.get(MDS) as response:
                if response.status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("modeldeployments not served within 60 s")
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        self.plane.stop()

    def cpu_seconds(self) -> dict[str, float]:
        return {name: cpu_seconds(process.pid) for name, process in self.plane.processes.items()}

    async def request_counts(self, session: aiohttp.ClientSession) -> Counter:
        async with session.get("/metrics", headers={"Accept": "text/plain"}) as response:
            text = await response.text()
        counts: Counter = Counter()
        for line in text.splitlines():
            if line.startswith("apiserver_request_total{"):
                labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
                key = (labels.get("verb", ""), labels.get("group", ""), labels.get("resource", ""),
                       labels.get("subresource", ""))
                counts[key] += int(float(line.rsplit(" ", 1)[1]))
        return counts

    def md_body(self, name: str) -> dict[str, Any]:
        body = make_model_deployment(name)
        # A real server assigns uid, generation and resourceVersion; it refuses a resourceVersion on create.
        body["metadata"] = {"name": name, "namespace": NAMESPACE}
        return body


class Cluster:
    """A backend, an operator process against it, and an HTTP session for playing the user (its requests counted)."""

    def __init__(self, backend_name: str, workdir: Path, resync_seconds: float, trace_memory: bool = False) -> None:
        self.backend = EmulatorBackend() if backend_name == "emulator" else RealBackend()
        self.workdir = workdir / f"{backend_name}-{time.monotonic_ns()}"
        self.resync_seconds, self.trace_memory = resync_seconds, trace_memory
        self.own: Counter = Counter()

    async def __aenter__(self) -> Cluster:
        self.workdir.mkdir(parents=True)
        await self.backend.start(self.workdir)
        try:
            connector = aiohttp.TCPConnector(ssl=self.backend.ssl if self.backend.ssl else False, limit=64)
            self.session = aiohttp.ClientSession(self.backend.url, connector=connector,
                                                 timeout=aiohttp.ClientTimeout(total=None, sock_connect=30))
            if isinstance(self.backend, RealBackend):
                await self.backend.prepare(self.session)
            self.operator = Child(_operator_main, str(self.backend.kubeconfig), str(self.workdir / "operator.log"),
                                  self.resync_seconds, self.trace_memory)
            await self.operator.ask(None, timeout=90)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *_: Any) -> None:
        with contextlib.suppress(Exception):
            await self.session.close()
        if hasattr(self, "operator"):
            self.operator.stop()
        self.backend.stop()

    def _count(self, method: str, path: str) -> None:
        self.own[request_key(method, path)] += 1

    async def create(self, name: str) -> None:
        self._count("POST", MDS)
        async with self.session.post(MDS, json=self.backend.md_body(name)) as response:
            if response.status >= 300:
                raise RuntimeError(f"POST {name}: {response.status} {await response.text()}")

    async def get(self, path: str) -> dict[str, Any] | None:
        self._count("GET", path)
        async with self.session.get(path) as response:
            return await response.json() if response.status == 200 else None

    async def requests(self) -> Counter:
        """The backend's count of every request so far (the emulator's log, or apiserver_request_total)."""
        if isinstance(self.backend, RealBackend):
            self._count("GET", "/metrics")
        return await self.backend.request_counts(self.session)

    async def report(self) -> dict[str, Any]:
        return await self.operator.ask("report")

    async def watch_sized(self, count: int, sized_names: set[str]) -> None:
        """Watch ModelDeployments until `count` of them have a Sized condition (names collected in `sized_names`)."""
        while len(sized_names) < count:
            self._count("GET", f"{MDS}?watch=true")
            async with self.session.get(MDS, params={"watch": "true"}) as response:
                if response.status != 200:
                    raise RuntimeError(f"watch: {response.status} {await response.text()}")
                async for line in response.content:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    obj = event.get("object") or {}
                    name = (obj.get("metadata") or {}).get("name")
                    if event.get("type") in ("ADDED", "MODIFIED") and sized(obj):
                        sized_names.add(name)
                    elif event.get("type") == "DELETED":
                        sized_names.discard(name)
                    if len(sized_names) >= count:
                        return


def sized(md: dict[str, Any] | None) -> bool:
    return md is not None and any(c.get("type") == "Sized" for c in (md.get("status") or {}).get("conditions", ()))


# --- the measurements --------------------------------------------------------------------------------------------

async def reconcile_latency(cluster: Cluster, runs: int) -> list[float]:
    latencies = []
    for index in range(runs):
        name = f"latency-{index}"
        started = time.perf_counter()
        await cluster.create(name)
        while not (sized(await cluster.get(f"{MDS}/{name}")) and await cluster.get(f"{DEPLOYMENTS}/{name}")
                   and await cluster.get(f"{SERVICES}/{name}")):
            if time.perf_counter() - started > 60:
                raise RuntimeError(f"{name} not reconciled within 60 s")
            await asyncio.sleep(0.005)
        latencies.append(time.perf_counter() - started)
    return latencies


async def noop_resync(cluster: Cluster, periods: int) -> dict[str, Any]:
    """Wait for two quiet resync periods (capped), then count writes (and reads) over `periods` periods."""
    period = cluster.resync_seconds
    settle_started = time.perf_counter()

    async def writes_now() -> tuple[Counter, dict]:
        return operator_writes(await cluster.requests()), (await cluster.report())["writes"]

    last, quiet = await writes_now(), 0
    while quiet < 2 and time.perf_counter() - settle_started < 90:
        await asyncio.sleep(period)
        now = await writes_now()
        quiet = quiet + 1 if now == last else 0
        last = now
    settle = time.perf_counter() - settle_started
    server_before, report_before = await cluster.requests(), await cluster.report()
    started = time.perf_counter()
    await asyncio.sleep(periods * period + 0.5)
    server_after, report_after = await cluster.requests(), await cluster.report()
    window = time.perf_counter() - started
    operator_sent = delta(report_after["requests"], report_before["requests"])
    server = delta(server_after, server_before)
    return {
        "settle": settle, "window": window,
        "client_writes": delta(report_after["writes"], report_before["writes"]),
        "operator_writes": operator_writes(operator_sent),
        "operator_reads": sum(n for key, n in operator_sent.items() if key[0] in ("GET", "LIST")),
        "server_writes": operator_writes(server),
    }


async def reconcile_fleet(cluster: Cluster, count: int, timeout: float, concurrency: int = 20) -> dict[str, Any]:
    names = [f"fleet-{index:04d}" for index in range(count)]
    pending: asyncio.Queue = asyncio.Queue()
    for name in names:
        pending.put_nowait(name)

    async def poster() -> None:
        while not pending.empty():
            await cluster.create(pending.get_nowait())

    sized_names: set[str] = set()
    server_before, report_before = await cluster.requests(), await cluster.report()
    own_before = Counter(cluster.own)
    cpu = (cluster.operator.cpu_seconds(), cluster.backend.cpu_seconds())
    started = time.perf_counter()
    watch = asyncio.create_task(cluster.watch_sized(count, sized_names))
    progress = Progress(started, timeout)
    try:
        await asyncio.gather(*(poster() for _ in range(concurrency)))
        while not watch.done() and progress.going(len(sized_names)):
            await asyncio.wait({watch}, timeout=1.0)
        if watch.done():
            watch.result()  # a failed watch fails the run
    finally:
        watch.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watch
    all_sized = time.perf_counter() - started
    while True:
        deployments = len((await cluster.get(DEPLOYMENTS) or {"items": []})["items"])
        services = len((await cluster.get(SERVICES) or {"items": []})["items"])
        if (deployments >= count and services >= count) or not progress.going((deployments, services)):
            break
        await asyncio.sleep(0.25)
    complete = len(sized_names) >= count and deployments >= count and services >= count
    elapsed = time.perf_counter() - started
    operator_cpu = cluster.operator.cpu_seconds() - cpu[0]
    backend_cpu = {name: seconds - cpu[1].get(name, 0.0) for name, seconds in cluster.backend.cpu_seconds().items()}
    report = await cluster.report()
    server = delta(await cluster.requests(), server_before)
    own = delta(cluster.own, own_before)
    pods: Counter = Counter()
    if isinstance(cluster.backend, RealBackend):  # after the counts: this LIST is not part of them
        listing = await cluster.get(f"/api/v1/namespaces/{NAMESPACE}/pods") or {"items": []}
        pods = Counter((pod.get("status") or {}).get("phase", "?") for pod in listing["items"])
    return {
        "complete": complete, "sized": len(sized_names), "elapsed": elapsed, "all_sized": all_sized,
        "operator_cpu": operator_cpu, "backend_cpu": backend_cpu,
        "server": server, "operator_sent": delta(report["requests"], report_before["requests"]),
        "client_writes": delta(report["writes"], report_before["writes"]), "own": own,
        "deployments": deployments, "services": services, "report": report, "pods": pods,
    }


class Progress:
    """Whether to keep waiting: within the timeout, and something changed within the last STALL_S seconds."""

    def __init__(self, started: float, timeout: float) -> None:
        self.started, self.timeout = started, timeout
        self.seen: Any = None
        self.changed = time.perf_counter()

    def going(self, state: Any) -> bool:
        now = time.perf_counter()
        if state != self.seen:
            self.seen, self.changed = state, now
        return now - self.started < self.timeout and now - self.changed < STALL_S


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


async def measure_fleet(backend: str, workdir: Path, count: int, trace_memory: bool, profile: int,
                        timeout: float) -> dict[str, Any]:
    async with Cluster(backend, workdir, resync_seconds=300.0, trace_memory=trace_memory) as cluster:
        if profile:
            with Sampler(cluster.operator.process.pid, cluster.workdir / "operator.pyspy") as sampler:
                fleet = await reconcile_fleet(cluster, count, timeout)
            fleet["top"] = sampler.top(profile)
        else:
            fleet = await reconcile_fleet(cluster, count, timeout)
            fleet["top"] = []
        return fleet


# --- the table ---------------------------------------------------------------------------------------------------

class Table:
    """Rows of (measure, value per backend, notes); numbers kept for the ratio column."""

    def __init__(self, backends: list[str]) -> None:
        self.backends = backends
        self.rows: list[tuple[str, dict[str, str], str, str]] = []

    def add(self, label: str, values: dict[str, float | None], fmt: str, note: str = "",
            ratio: bool = True) -> None:
        shown = {b: ("—" if values.get(b) is None else fmt.format(values[b])) for b in self.backends}
        emulator, real = values.get("emulator"), values.get("real")
        if not ratio or emulator is None or real is None:
            r = ""
        elif emulator == 0:
            r = "=" if real == 0 else "∞"
        else:
            r = f"{real / emulator:.2f}×"
        self.rows.append((label, shown, r, note))

    def print(self) -> None:
        width = max(len(row[0]) for row in self.rows)
        columns = [max(12, *(len(row[1][b]) for row in self.rows)) for b in self.backends]
        both = len(self.backends) == 2
        header = f"{'measure'.ljust(width)}  " + "  ".join(b.rjust(w) for b, w in zip(self.backends, columns))
        header += f"  {'real/emul':>9}" if both else ""
        print(f"\n{header}  notes")
        for label, shown, r, note in self.rows:
            line = f"{label.ljust(width)}  " + "  ".join(shown[b].rjust(w) for b, w in zip(self.backends, columns))
            line += f"  {r:>9}" if both else ""
            print(f"{line}  {note}".rstrip())


def verdicts(values: dict[str, float], goal: float) -> str:
    return ", ".join(f"{b} {'PASS' if v < goal else 'MISS'}" for b, v in values.items())


def breakdown(counts: Counter, count: int, limit: int = 14) -> list[str]:
    total = sum(counts.values())
    shown = [(key, n) for key, n in counts.most_common(limit) if n / count >= 0.005]
    lines = [f"  {n / count:7.2f}  {key_label(key)}" for key, n in shown]
    rest = total - sum(n for _, n in shown)
    if rest > 0:
        lines.append(f"  {rest / count:7.2f}  (everything else)")
    return lines


async def main(args: argparse.Namespace) -> None:
    backends = list(BACKENDS) if args.backend == "both" else [args.backend]
    table = Table(backends)
    started, load_at_start = time.perf_counter(), _load()
    durations: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as directory:
        workdir = Path(directory)

        # (a) and (b)
        latency: dict[str, list[float]] = {}
        resync: dict[str, dict[str, Any]] = {}
        for backend in backends:
            phase = time.perf_counter()
            async with Cluster(backend, workdir, resync_seconds=2.0) as cluster:
                latency[backend] = await reconcile_latency(cluster, args.latency_runs)
                resync[backend] = await noop_resync(cluster, args.resync_periods)
            durations[f"(a)+(b) {backend}"] = time.perf_counter() - phase
        table.add("(a) POST → Sized + children, median", {b: statistics.median(v) * 1000 for b, v in latency.items()},
                  "{:.0f} ms", f"{args.latency_runs} creations, one at a time")
        table.add("(a) POST → Sized + children, p95", {b: p95(v) * 1000 for b, v in latency.items()}, "{:.0f} ms",
                  "max " + ", ".join(f"{b} {max(v) * 1000:.0f} ms" for b, v in latency.items()))
        table.add("(b) no-op resync: runtime.kube.writes", {b: sum(r["client_writes"].values())
                                                          for b, r in resync.items()}, "{:.0f}",
                  f"goal 0; {args.resync_periods} resyncs of 2 s over {args.latency_runs} objects; "
                  + "; ".join(f"{b} {_writes_note(r['client_writes'])}" for b, r in resync.items()))
        table.add("(b) no-op resync: writes the operator sent", {b: sum(r["operator_writes"].values())
                                                               for b, r in resync.items()}, "{:.0f}",
                  "goal 0; kopf's included; " + "; ".join(f"{b} {_writes_note(r['operator_writes'], True)}"
                                                          for b, r in resync.items()))
        table.add("(b) no-op resync: writes the server counted", {b: sum(r["server_writes"].values())
                                                                for b, r in resync.items()}, "{:.0f}",
                  "goal 0; emulator log / apiserver_request_total; "
                  + "; ".join(f"{b} {_writes_note(r['server_writes'], True)}" for b, r in resync.items()))
        table.add("(b) no-op resync: reads the operator sent", {b: r["operator_reads"] for b, r in resync.items()},
                  "{:.0f}", "windows " + ", ".join(f"{b} {r['window']:.1f} s after {r['settle']:.1f} s settling"
                                                   for b, r in resync.items()))

        # (c)
        fleets: dict[str, dict[str, Any]] = {}
        for backend in backends:
            phase = time.perf_counter()
            fleets[backend] = await measure_fleet(backend, workdir, args.fleet, trace_memory=False,
                                                  profile=args.profile, timeout=args.fleet_timeout)
            durations[f"(c) {backend}"] = time.perf_counter() - phase
        n = args.fleet
        elapsed = {b: f["elapsed"] for b, f in fleets.items()}
        table.add(f"(c) {n} ModelDeployments reconciled", elapsed, "{:.1f} s",
                  f"goal < {TIME_GOAL_S:.0f} s: {verdicts(elapsed, TIME_GOAL_S)}; all Sized at "
                  + ", ".join(f"{b} {f['all_sized']:.1f} s" for b, f in fleets.items())
                  + "".join(f"; {b} INCOMPLETE: {f['sized']} of {n} Sized, {f['deployments']} Deployments, "
                            f"{f['services']} Services when it stalled for {STALL_S:.0f} s or --fleet-timeout ran out"
                            for b, f in fleets.items() if not f["complete"])
                  + ("; py-spy attached" if args.profile else ""))
        table.add("(c) Deployments / Services present", {b: f["deployments"] for b, f in fleets.items()}, "{:.0f}",
                  "Services: " + ", ".join(f"{b} {f['services']}" for b, f in fleets.items())
                  + "".join(f"; {b} Pods then: " + ", ".join(f"{k} {v}" for k, v in f["pods"].most_common())
                            for b, f in fleets.items() if f["pods"]), ratio=False)
        table.add("(c) operator CPU time", {b: f["operator_cpu"] for b, f in fleets.items()}, "{:.1f} s",
                  "user + system, the operator process")
        table.add("(c) backend CPU time", {b: sum(f["backend_cpu"].values()) for b, f in fleets.items()},
                  "{:.1f} s", "; ".join(f"{b}: " + ", ".join(f"{k} {v:.1f}" for k, v in f["backend_cpu"].items())
                                        for b, f in fleets.items() if b == "real"))
        hwm = {b: f["report"]["hwm_mib"] - f["report"]["rss_before_mib"] for b, f in fleets.items()}
        table.add("(c) operator RSS high-water mark − at start", hwm, "{:.0f} MiB",
                  f"goal < {MEMORY_GOAL_MIB:.0f} MiB: {verdicts(hwm, MEMORY_GOAL_MIB)}; VmHWM "
                  + ", ".join(f"{b} {f['report']['hwm_mib']:.0f} MiB" for b, f in fleets.items()))
        table.add("(c) API requests / object, server count", {b: sum(f["server"].values()) / n
                                                            for b, f in fleets.items()}, "{:.1f}",
                  "every verb and resource; emulator log / apiserver_request_total")
        table.add("(c)   of which the operator sent", {b: sum(f["operator_sent"].values()) / n
                                                      for b, f in fleets.items()}, "{:.1f}",
                  "its KubeClient and kopf, counted in the operator process")
        table.add("(c)   of which writes (runtime.kube.writes)", {b: sum(f["client_writes"].values()) / n
                                                                for b, f in fleets.items()}, "{:.1f}",
                  "the operator client's own write counter")
        table.add("(c)   of which the benchmark sent", {b: sum(f["own"].values()) / n for b, f in fleets.items()},
                  "{:.2f}", "POSTs, the watch, LISTs, metrics scrapes")
        table.add("(c)   everyone else (server − operator − bench)",
                  {b: (sum(f["server"].values()) - sum(f["operator_sent"].values()) - sum(f["own"].values())) / n
                   for b, f in fleets.items()}, "{:.1f}",
                  f"real: controller-manager, scheduler, kwok ({n} Pods, nearly all Pending)", ratio=False)
        if args.tracemalloc:
            traced: dict[str, dict[str, Any]] = {}
            for backend in backends:
                phase = time.perf_counter()
                traced[backend] = await measure_fleet(backend, workdir, args.fleet, trace_memory=True, profile=0,
                                                      timeout=args.fleet_timeout)
                durations[f"(c) tracemalloc {backend}"] = time.perf_counter() - phase
            peaks = {b: t["report"]["tracemalloc_peak_mib"] for b, t in traced.items()}
            table.add("(c) tracemalloc peak (second run)", peaks, "{:.0f} MiB",
                      f"goal < {MEMORY_GOAL_MIB:.0f} MiB: {verdicts(peaks, MEMORY_GOAL_MIB)}; those runs took "
                      + ", ".join(f"{b} {t['elapsed']:.1f} s" + ("" if t["complete"] else " (INCOMPLETE)")
                                  for b, t in traced.items()))
    table.print()
    for backend, fleet in fleets.items():
        print(f"\nAPI requests per ModelDeployment during the timed fleet run, {backend}, as the server counted them:")
        print("\n".join(breakdown(fleet["server"], n, limit=20)))
        print("  … of which the operator sent (its own count):")
        print("\n".join(breakdown(fleet["operator_sent"], n, limit=12)))
    for backend, fleet in fleets.items():
        if fleet["top"]:
            print(f"\nOperator process, py-spy samples (all threads, inclusive), {backend} fleet run:")
            for share, frame in fleet["top"]:
                print(f"  {share:5.1f}%  {frame}")
    print(f"\nRun: backends {', '.join(backends)}; --fleet {n}, --latency-runs {args.latency_runs}, "
          f"--resync-periods {args.resync_periods}; {os.cpu_count()} CPUs, load average {load_at_start} at the "
          f"start, {_load()} at the end; total {time.perf_counter() - started:.0f} s ("
          + ", ".join(f"{k} {v:.0f} s" for k, v in durations.items()) + ")")


def _load() -> str:
    """The 1- and 5-minute load averages: how busy the shared machine was."""
    one, five, _ = os.getloadavg()
    return f"{one:.1f}/{five:.1f}"


def p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20, method="inclusive")[18] if len(values) >= 2 else values[0]


def _writes_note(counts: Counter, keyed: bool = False) -> str:
    if not counts:
        return "none"
    if keyed:
        return " ".join(f"{key_label(k)}×{n}" for k, n in counts.most_common(4))
    return " ".join(f"{k}×{n}" for k, n in counts.items())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("both", *BACKENDS), default="both")
    parser.add_argument("--latency-runs", type=int, default=20)
    parser.add_argument("--fleet", type=int, default=1000)
    parser.add_argument("--resync-periods", type=int, default=3)
    parser.add_argument("--no-tracemalloc", dest="tracemalloc", action="store_false",
                        help="skip the second fleet run (per backend) that measures tracemalloc's peak")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="py-spy the timed fleet run, print top N")
    parser.add_argument("--fleet-timeout", type=float, default=FLEET_TIMEOUT_S, metavar="SECONDS",
                        help="give up waiting for a fleet after this long and report how far it got")
    asyncio.run(main(parser.parse_args()))
