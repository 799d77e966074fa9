"""Helpers for the end-to-end tier: the operator in-process against the real cluster, and polling."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

@contextlib.asynccontextmanager
async def running_operator(
    namespace: str, *, resync_seconds: float = 3.0, api: Any = None, login: Callable[..., Any] | None = None,
    config: Any = None,
) -> AsyncIterator[Any]:
    """The real operator (kopf + our registry) as a task in this loop, watching `namespace` of the real cluster.

    `api` and `login` default to the current kubeconfig's credentials; the RBAC test passes a ServiceAccount's.
    `config` (an OperatorConfig) replaces the default one, and with it `resync_seconds`: the autoscaling test
    passes its Prometheus URL and a short control interval.
    """
    from neuroscale.k8s.client import KubeClient, load_config
    from neuroscale.runtime import OperatorConfig, Runtime
    from tests.support.kube import operator_task

    config = config or OperatorConfig(resync_seconds=resync_seconds, autoscale_interval_seconds=5.0)
    api = api or load_config()
    runtime = Runtime(kube=KubeClient(api), config=config)
    async with operator_task(runtime, login or login_as(api), [namespace], start_timeout=30) as running:
        yield running


def login_as(api: Any) -> Callable[..., Any]:
    """A kopf login handler with the same credentials as `api` (token or client certificate)."""
    import kopf

    c = api.configuration

    def login(**_: Any) -> kopf.ConnectionInfo:
        token = (c.api_key or {}).get("authorization", "").removeprefix("Bearer ") or None
        return kopf.ConnectionInfo(server=c.host, ca_path=c.ssl_ca_cert, insecure=not c.verify_ssl, token=token,
                                   certificate_path=c.cert_file, private_key_path=c.key_file)
    return login


def wait_for(check: Callable[[], Any], *, timeout: float = 60.0, what: str = "condition") -> Any:
    """Poll a blocking `check` until it returns something truthy (for fixtures, outside the operator's loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"{what}: not true within {timeout}s")


async def eventually(check: Callable[[], Any], *, timeout: float = 60.0, interval: float = 0.5) -> Any:
    """Poll `check` (blocking API calls, run in a thread so the operator's loop keeps going) until it is truthy."""
    import kubernetes

    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = await asyncio.to_thread(check)
            if result:
                return result
            last = AssertionError(f"{getattr(check, '__name__', 'check')} returned {result!r}")
        except (AssertionError, KeyError, TypeError, kubernetes.client.ApiException) as exc:
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"not true within {timeout}s: {last}")


class Apis:
    """Typed views of the API groups the tests read, all on one ApiClient, for one test namespace."""

    def __init__(self, api: Any, namespace: str) -> None:
        import kubernetes

        self.api = api
        self.namespace = namespace
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.core = kubernetes.client.CoreV1Api(api)
        self.policy = kubernetes.client.PolicyV1Api(api)
        self.networking = kubernetes.client.NetworkingV1Api(api)


def reconciles(kind: str) -> float:
    """Successful reconciles of `kind` so far in this process (the operator's own metric)."""
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("neuroscale_reconciles_total", {"kind": kind, "result": "ok"}) or 0.0


def node_not_ready_events(cluster: Apis) -> list[str]:
    """The node lifecycle controller's NodeNotReady Events on this namespace's pods: when a node misses its
    heartbeat, its pods are marked not ready and the statuses that count them change (a reason to write)."""
    events = cluster.core.list_namespaced_event(cluster.namespace, field_selector="reason=NodeNotReady").items
    return [f"{e.involved_object.name}: {e.message}" for e in events]


async def quiet(runtime: Any, seconds: float = 3.0, timeout: float = 60.0) -> None:
    """Wait until the operator has made no API write for `seconds` (longer than one 2 s resync): the reconcile of
    the last rollout event may still be on its way when the objects already look settled."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        before = runtime.kube.writes.total
        await asyncio.sleep(seconds)
        if runtime.kube.writes.total == before:
            return
    raise AssertionError(f"the operator kept writing for {timeout}s: {runtime.kube.writes.counts}")


async def assert_settled_resync_writes_nothing(
    runtime: Any, cluster: Apis, kind: str, versions: Callable[[], dict[str, str]],
) -> None:
    """Over at least three 2 s resyncs of a settled `kind`: no operator write, and no resourceVersion moves (a
    completed rollout is not even touched by the Deployment controller)."""
    await quiet(runtime)
    writes, before, passes = runtime.kube.writes.total, await asyncio.to_thread(versions), reconciles(kind)
    await asyncio.sleep(7)
    after = await asyncio.to_thread(versions)
    disrupted = await asyncio.to_thread(node_not_ready_events, cluster)
    assert runtime.kube.writes.total == writes, (runtime.kube.writes.counts, disrupted)
    assert reconciles(kind) - passes >= 3  # the resync did run, and found nothing to write
    assert after == before, disrupted


@contextlib.contextmanager
def throwaway_namespace(api: Any, prefix: str = "neuroscale-e2e") -> Iterator[str]:
    """A fresh namespace `<prefix>-<random>`, deleted afterwards with everything in it."""
    import kubernetes

    core = kubernetes.client.CoreV1Api(api)
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "neuroscale-e2e"}}})
    try:
        yield name
    finally:
        with contextlib.suppress(kubernetes.client.ApiException):
            core.delete_namespace(name, propagation_policy="Background")
