"""Faults a real API server does not produce on demand, injected by a proxy in front of it (tests/support/
fault_proxy.py): everything else the operator meets is the real server.

Covers: a 500 on the first server-side apply of the Deployment → Degraded=True/ApplyFailed, then the retry creates
it, announced as created (not "Restored"); a 429 with Retry-After on a status write → retried, converges; a 409 on a
status write (a concurrent writer) → the status is rebuilt and written once, and each transition Event is posted
once, not once per attempt; in every case exactly one of each child.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import kopf
import kubernetes
import pytest

from neuroscale.k8s.client import KubeClient
from neuroscale.runtime import OperatorConfig, Runtime
from tests.e2e.cluster import eventually
from tests.e2e.test_modeldeployment_e2e import Cluster, condition, settled
from tests.support.fault_proxy import Fault, fault_proxy
from tests.support.kube import operator_task

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
def plane(control_plane: Any) -> Any:
    if control_plane is None:
        pytest.skip("the proxy authenticates with the suite's own control plane's admin certificate")
    return control_plane


@pytest.fixture
def cluster(api: Any, namespace: str) -> Cluster:
    return Cluster(api, namespace)


async def run_through(proxy: Any, namespace: str, tmp_path: Path) -> Any:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(config_file=str(proxy.write_kubeconfig(tmp_path / "proxy.kubeconfig")),
                                       client_configuration=configuration)
    runtime = Runtime(kube=KubeClient(kubernetes.client.ApiClient(configuration)),
                      config=OperatorConfig(resync_seconds=2.0, autoscale_interval_seconds=5.0))
    return operator_task(runtime, lambda **_: kopf.ConnectionInfo(server=proxy.url), [namespace], start_timeout=30)


def reasons(cluster: Cluster) -> Counter:
    return Counter(e.reason for e in cluster.events())


def one_of_each(cluster: Cluster) -> bool:
    children = cluster.children()
    return all(children.values())


async def test_a_failed_first_apply_is_retried_and_announced_as_a_creation(
    plane: Any, cluster: Cluster, tmp_path: Path,
) -> None:
    async with fault_proxy(plane) as proxy:
        failed = proxy.inject(Fault("PATCH", rf"/namespaces/{cluster.namespace}/deployments/llama\?.*fieldManager", 500))
        async with await run_through(proxy, cluster.namespace, tmp_path):
            await asyncio.to_thread(cluster.create)
            md = await eventually(lambda: (m := cluster.md()) and condition(m, "Degraded")
                                  and condition(m, "Degraded")["reason"] == "ApplyFailed" and m)
            assert "injected 500" in condition(md, "Degraded")["message"]
            await eventually(lambda: (m := cluster.md()) and condition(m, "Degraded")["status"] == "False")
            await settled(cluster)
    assert failed.hits == 1
    seen = await asyncio.to_thread(reasons, cluster)
    assert seen["Restored"] == 0, seen
    assert seen["Created"] >= 3, seen  # Deployment, Service, PDB (and the ServiceAccount when made)


async def test_throttled_and_conflicting_status_writes_converge_with_one_event_each(
    plane: Any, cluster: Cluster, tmp_path: Path,
) -> None:
    async with fault_proxy(plane) as proxy:
        status_path = rf"/namespaces/{cluster.namespace}/modeldeployments/llama/status"
        throttled = proxy.inject(Fault("PATCH", status_path, 429, headers={"Retry-After": "1"}))
        conflict = proxy.inject(Fault("PATCH", status_path, 409, times=2))
        async with await run_through(proxy, cluster.namespace, tmp_path):
            await asyncio.to_thread(cluster.create)
            md = await settled(cluster)
            await asyncio.sleep(3)  # a resync or two: nothing more to announce
            assert await asyncio.to_thread(one_of_each, cluster)
    assert throttled.hits == 1 and conflict.hits == 2
    assert condition(md, "Sized")["status"] == "True"
    seen = await asyncio.to_thread(reasons, cluster)
    assert seen["SizingChosen"] == 1, seen  # the Sized=True announcement, once despite three failed writes
