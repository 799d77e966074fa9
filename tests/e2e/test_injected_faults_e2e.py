"""Faults a real API server does not produce on demand, injected by a proxy in front of it (tests/support/
fault_proxy.py): everything else the operator meets is the real server.

Covers: a 500 on the first server-side apply of the Deployment → Degraded=True/ApplyFailed, then the retry creates
it, announced as created (not "Restored"); a 429 with Retry-After on a status write → retried, converges; a 409 on a
status write (a concurrent writer) → the status is rebuilt and written once, and each transition Event is posted
once, not once per attempt; in every case exactly one of each child. An in-stream watch ERROR event (a server
failing mid-watch), which kopf treats as fatal, ends `neuroscale run` within seconds with a non-zero status (the
Deployment restarts it) instead of leaving a live process that reconciles nothing; the restarted one reconciles.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
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


def start_operator(kubeconfig: Path, namespace: str, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "neuroscale", "run", "--namespace", namespace, "--health-port", "0", "--metrics-port",
         "0"], env={**os.environ, "KUBECONFIG": str(kubeconfig)}, stdout=log.open("ab"), stderr=subprocess.STDOUT)


async def test_an_in_stream_watch_error_restarts_the_operator_promptly(
    plane: Any, cluster: Cluster, tmp_path: Path,
) -> None:
    """kopf treats the event as fatal and its shutdown can hang; its SIGKILL deadline (25 s, set in `configure`)
    ends the process for the Deployment to restart — never minutes of a live process that reconciles nothing."""
    async with fault_proxy(plane) as proxy:
        broken = proxy.inject(Fault("GET", r"/modeldeployments\?.*watch=true", 500, watch_error=True))
        kubeconfig = proxy.write_kubeconfig(tmp_path / "proxy.kubeconfig")
        log = tmp_path / "operator.log"
        first = start_operator(kubeconfig, cluster.namespace, log)
        second = None
        try:
            await eventually(lambda: broken.hits >= 1, timeout=60)
            await asyncio.to_thread(cluster.create)

            def serving_or_exited() -> bool:
                return first.poll() is not None or cluster.children()["Deployment"] is not None
            await eventually(serving_or_exited, timeout=60)
            if first.poll() is not None:
                assert first.returncode != 0, "it stopped as if asked to"
                second = start_operator(kubeconfig, cluster.namespace, log)  # what the kubelet does
            await settled(cluster)
        finally:
            for process in (first, second):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(40)
    assert "injected 500" in log.read_text()
