"""The kmock Kubernetes emulator on loopback, our CRDs declared in it, and the operator running against it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import kmock
import kopf
import kubernetes

from neuroscale.api.common import GROUP, VERSION
from neuroscale.api.registry import KINDS
from neuroscale.handlers import build_registry
from neuroscale.k8s.client import KubeClient
from neuroscale.runtime import OperatorConfig, Runtime
from tests.support import kube_emulator
from tests.support.kube_emulator import Emulator, serve_kind

NAMESPACE = "ns1"
GROUP_VERSION = "neuroscale.io/v1alpha1"


@contextlib.asynccontextmanager
async def emulator() -> AsyncIterator[Emulator]:
    """The emulator served on a free loopback port, our kinds declared."""
    async with Emulator() as server, kmock.Server(server):
        declare_resources(server)
        yield server


def declare_resources(server: kmock.KubernetesEmulator) -> None:
    """Built-in kinds plus ours; without watch/list/patch kopf silently serves nothing."""
    server.resources.load_bundled()
    for kind in KINDS:
        serve_kind(server, group=GROUP, version=VERSION, plural=kind.plural, kind=kind.kind, namespaced=True,
                   subresources={"status"})


def write_kubeconfig(path: Path, url: str) -> Path:
    return kube_emulator.write_kubeconfig(url, path, NAMESPACE)


def api_client(kubeconfig: Path) -> kubernetes.client.ApiClient:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


@contextlib.asynccontextmanager
async def operator_task(
    runtime: Runtime, login: Callable[..., Any], namespaces: Iterable[str], start_timeout: float = 10.0,
) -> AsyncIterator[Runtime]:
    """The real operator (kopf + our registry, settings from our startup handler) as a task in this loop."""
    registry = build_registry(runtime.config, login=login)
    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(kopf.operator(
        registry=registry, namespaces=list(namespaces), standalone=True,
        stop_flag=stop, ready_flag=ready, memo=kopf.Memo(runtime=runtime),
    ))
    await asyncio.wait_for(ready.wait(), start_timeout)
    try:
        yield runtime
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError, asyncio.TimeoutError):
            await asyncio.wait_for(task, start_timeout)


@contextlib.asynccontextmanager
async def running_operator(
    kubeconfig: Path, config: OperatorConfig | None = None, namespaces: tuple[str, ...] = (NAMESPACE,),
    **runtime_extras: Any,
) -> AsyncIterator[Runtime]:
    """The operator against the emulator behind `kubeconfig`; stopped on exit."""
    config = config or OperatorConfig(resync_seconds=2.0, autoscale_interval_seconds=1.0)
    runtime = Runtime(kube=KubeClient(api_client(kubeconfig)), config=config, extras=dict(runtime_extras))
    async with operator_task(runtime, _login(kubeconfig), namespaces) as running:
        yield running


def _login(kubeconfig: Path) -> Callable[..., kopf.ConnectionInfo]:
    def login(**_: Any) -> kopf.ConnectionInfo:
        config = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(config_file=str(kubeconfig), client_configuration=config)
        return kopf.ConnectionInfo(server=config.host, token="test-token", insecure=True)
    return login


async def eventually(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Poll `check` until it returns a truthy value (returned) or raises nothing; fail with its last error."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
            last = AssertionError(f"{getattr(check, '__name__', 'check')} returned {result!r}")
        except (AssertionError, KeyError, TypeError) as exc:
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"not true within {timeout}s: {last}")


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    """The status condition of `type_`, or None."""
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


def stored(server: kmock.KubernetesEmulator, resource: str, name: str, namespace: str = NAMESPACE) -> dict | None:
    """The emulator's current copy of an object, or None when absent or deleted."""
    try:
        obj = server.objects[resource, namespace, name]
    except KeyError:
        return None
    return None if obj.deleted else obj.raw
