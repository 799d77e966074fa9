"""The operator (kopf + our registry) as a task in the test's loop, and our CRDs declared in the kmock emulator that
the benchmark runs side by side with the real API server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import kmock
import kopf

from neuroscale.api.common import GROUP, VERSION
from neuroscale.api.registry import KINDS
from neuroscale.handlers import build_registry
from neuroscale.runtime import Runtime
from tests.support import kube_emulator
from tests.support.kube_emulator import serve_kind

NAMESPACE = "ns1"
GROUP_VERSION = "neuroscale.io/v1alpha1"


def declare_resources(server: kmock.KubernetesEmulator) -> None:
    """Built-in kinds plus ours; without watch/list/patch kopf silently serves nothing."""
    server.resources.load_bundled()
    for kind in KINDS:
        serve_kind(server, group=GROUP, version=VERSION, plural=kind.plural, kind=kind.kind, namespaced=True,
                   subresources={"status"})


def write_kubeconfig(path: Path, url: str) -> Path:
    return kube_emulator.write_kubeconfig(url, path, NAMESPACE)


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
