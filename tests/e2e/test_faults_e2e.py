"""Faults on the real control plane: each ends with exactly one of each child and a true status.

Covers: kube-apiserver restarted while the operator reconciles (its watches resume from a resourceVersion the new
server no longer has: 410 Gone, relist); etcd restarted under a running API server; the operator (`neuroscale run`,
a real process) SIGKILLed while it reconciles 50 ModelDeployments, then started again. Runs only against the
control plane this suite starts (an external cluster's API server is not ours to restart).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import eventually, running_operator
from tests.e2e.test_modeldeployment_e2e import Cluster, condition

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
LABEL = "neuroscale.io/model-deployment"


@pytest.fixture
def plane(control_plane: Any) -> Any:
    if control_plane is None:
        pytest.skip("restarts the API server and etcd: only the suite's own control plane")
    return control_plane


@pytest.fixture
def cluster(api: Any, namespace: str) -> Cluster:
    return Cluster(api, namespace)


def converged(cluster: Cluster, names: list[str]) -> bool:
    """Exactly one Deployment, Service and PDB per ModelDeployment, and each status true to its generation."""
    ns = cluster.namespace
    owners = {
        kind: Counter(o.metadata.labels.get(LABEL) for o in items)
        for kind, items in (
            ("Deployment", cluster.apps.list_namespaced_deployment(ns, label_selector=LABEL).items),
            ("Service", cluster.core.list_namespaced_service(ns, label_selector=LABEL).items),
            ("PodDisruptionBudget", cluster.policy.list_namespaced_pod_disruption_budget(ns, label_selector=LABEL).items),
        )
    }
    for kind, counts in owners.items():
        assert set(counts) <= set(names), f"{kind} for unknown owners: {set(counts) - set(names)}"
        assert all(n == 1 for n in counts.values()), f"duplicate {kind}: {counts}"
        if set(counts) != set(names):
            return False
    for item in cluster.custom.list_namespaced_custom_object("neuroscale.io", "v1alpha1", ns, "modeldeployments")["items"]:
        status = item.get("status") or {}
        if status.get("observedGeneration") != item["metadata"]["generation"]:
            return False
        if (condition(item, "Sized") or {}).get("status") != "True" or status.get("desiredReplicas") != 1:
            return False
    return True


async def test_api_server_restart_mid_run_converges_and_watches_resume(
    plane: Any, cluster: Cluster, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="kopf")
    names = [f"m{i}" for i in range(10)]
    async with running_operator(cluster.namespace, resync_seconds=3.0):
        for name in names[:5]:
            await asyncio.to_thread(cluster.create, name)
        # The first five reconciled: the watches are up (on a busy machine the restart could otherwise come before
        # kopf opened them, and there would be no watch to cut).
        await eventually(lambda: converged(cluster, names[:5]), timeout=120)
        await asyncio.to_thread(plane.restart, "kube-apiserver")
        for name in names[5:]:
            await asyncio.to_thread(cluster.create, name)
        await asyncio.to_thread(cluster.patch, {"spec": {"batching": {"maxNumSeqs": 16}}}, "m0")
        await eventually(lambda: converged(cluster, names), timeout=180)
        args = await asyncio.to_thread(lambda: cluster.deployment("m0").spec.template.spec.containers[0].args)
    assert args[args.index("--max-num-seqs") + 1] == "16"
    # The restart must have cut the watches: kopf logs a relist when a watch answers 410 Gone (resourceVersion too
    # old), or a retried watch request when the server was away; which one depends on the watch cache's window.
    # Objects created after the restart converging shows the watches came back (the resync walks what they index).
    assert any("Restarting the watch-stream" in r.getMessage()
               or (r.name.startswith("kopf._cogs.clients.watching") and "will retry" in r.getMessage())
               for r in caplog.records), "no watch was cut: the restart did not exercise resumption"


async def test_etcd_restart_under_a_running_api_server_converges(plane: Any, cluster: Cluster) -> None:
    names = [f"e{i}" for i in range(6)]
    async with running_operator(cluster.namespace, resync_seconds=3.0):
        for name in names[:3]:
            await asyncio.to_thread(cluster.create, name)
        await eventually(lambda: converged(cluster, names[:3]), timeout=120)
        await asyncio.to_thread(plane.restart, "etcd")
        for name in names[3:]:
            await eventually(lambda name=name: cluster.create(name), timeout=60)
        await eventually(lambda: converged(cluster, names), timeout=180)


def operator_process(plane: Any, namespace: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "KUBECONFIG": str(plane.kubeconfig)}
    return subprocess.Popen(
        [sys.executable, "-m", "neuroscale", "run", "--namespace", namespace, "--resync-seconds", "5",
         "--health-port", "0", "--metrics-port", "0"],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )


async def test_operator_killed_while_reconciling_fifty_objects_converges_after_restart(
    plane: Any, cluster: Cluster, tmp_path: Path,
) -> None:
    names = [f"k{i:02d}" for i in range(50)]
    for name in names:
        await asyncio.to_thread(cluster.create, name)
    log = tmp_path / "operator.log"
    first = operator_process(plane, cluster.namespace, log)
    try:
        # Kill it mid-way: some objects have children, others not yet.
        await eventually(lambda: len(cluster.apps.list_namespaced_deployment(
            cluster.namespace, label_selector=LABEL).items) >= 10, timeout=120)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        partial = len(await asyncio.to_thread(
            lambda: cluster.apps.list_namespaced_deployment(cluster.namespace, label_selector=LABEL).items))
        assert partial < len(names), "the operator finished before it was killed: nothing was interrupted"
        second = operator_process(plane, cluster.namespace, log)
        try:
            await eventually(lambda: converged(cluster, names), timeout=240, interval=2)
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
