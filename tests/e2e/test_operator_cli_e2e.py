"""`neuroscale run` as a real subprocess against a real API server, as the chart deploys it: under a ServiceAccount
holding only the Role the Helm chart renders for a namespaced install, with a token from the TokenRequest API.

Covers: the process logs in from the kubeconfig it is given, watches --namespace and turns a new ModelDeployment
into its Deployment, Service and PodDisruptionBudget with a Sized status for the current generation; kopf's
liveness endpoint answers on --health-port (/healthz); our Prometheus counters (neuroscale_reconciles_total,
neuroscale_child_writes_total) are served on --metrics-port and count what happened; SIGTERM stops the process
cleanly (exit code 0, no traceback); and the API server refused none of its requests (no 403 / Forbidden in its
log): the chart's namespaced Role is all it needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import kubernetes
import pytest
import yaml

from tests.e2e.cluster import eventually
from tests.support.factories import make_model_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION, PLURAL = "neuroscale.io", "v1alpha1", "modeldeployments"
REFUSED = re.compile(r"\b403\b|forbidden", re.IGNORECASE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_account_kubeconfig(api: Any, namespace: str, path: Path) -> Path:
    """A kubeconfig for ServiceAccount `neuroscale`, bound in `namespace` to the chart's rendered Role only."""
    from tests.support.rbac import rendered_rules

    core, rbac = kubernetes.client.CoreV1Api(api), kubernetes.client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "neuroscale"}})
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "neuroscale"},
                                            "rules": rendered_rules({"watchNamespaces": [namespace]})})
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "neuroscale"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "neuroscale"},
        "subjects": [{"kind": "ServiceAccount", "name": "neuroscale", "namespace": namespace}],
    })
    token = core.create_namespaced_service_account_token(
        "neuroscale", namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    admin = api.configuration
    cluster: dict[str, Any] = {"server": admin.host}
    if not admin.verify_ssl:
        cluster["insecure-skip-tls-verify"] = True
    elif admin.ssl_ca_cert:
        cluster["certificate-authority"] = str(admin.ssl_ca_cert)
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "operator",
        "clusters": [{"name": "cluster", "cluster": cluster}],
        "users": [{"name": "neuroscale", "user": {"token": token}}],
        "contexts": [{"name": "operator",
                      "context": {"cluster": "cluster", "user": "neuroscale", "namespace": namespace}}],
    }))
    path.chmod(0o600)
    return path


@contextlib.asynccontextmanager
async def operator_process(kubeconfig: Path, namespace: str, log: Path, metrics_port: int, health_port: int,
                           ) -> AsyncIterator[asyncio.subprocess.Process]:
    # Only the kubeconfig's credentials: no in-cluster ServiceAccount when the suite itself runs in a pod.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_SERVICE_")}
    env["KUBECONFIG"] = str(kubeconfig)
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "neuroscale", "run", "--namespace", namespace,
            "--metrics-port", str(metrics_port), "--health-port", str(health_port), "--bind-address", "127.0.0.1",
            cwd=ROOT, env=env, stdout=output, stderr=asyncio.subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def get_text(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url, timeout=aiohttp.ClientTimeout(total=5)) as reply:
        return reply.status, await reply.text()


def sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in text exposition format (0 when absent)."""
    for line in metrics.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def condition(md: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (md.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


async def test_run_under_the_charts_rbac_reconciles_serves_health_and_metrics_and_stops_on_sigterm(
    api: Any, namespace: str, tmp_path: Path,
) -> None:
    custom, apps = kubernetes.client.CustomObjectsApi(api), kubernetes.client.AppsV1Api(api)
    core, policy = kubernetes.client.CoreV1Api(api), kubernetes.client.PolicyV1Api(api)
    kubeconfig = await asyncio.to_thread(service_account_kubeconfig, api, namespace, tmp_path / "kubeconfig")
    metrics_port, health_port = free_port(), free_port()
    log = tmp_path / "operator.log"

    async with operator_process(kubeconfig, namespace, log, metrics_port, health_port) as process:
        def running() -> None:
            assert process.returncode is None, f"neuroscale run exited early:\n{log.read_text()[-3000:]}"

        async def healthy() -> bool:
            running()
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                return (await get_text(f"http://127.0.0.1:{health_port}/healthz"))[0] == 200
            return False

        for _ in range(300):
            if await healthy():
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail(f"/healthz never answered 200:\n{log.read_text()[-3000:]}")

        body = make_model_deployment("llama", namespace)
        body["metadata"] = {"name": "llama", "namespace": namespace}
        created = await asyncio.to_thread(custom.create_namespaced_custom_object, GROUP, VERSION, namespace,
                                          PLURAL, body)

        def reconciled() -> dict[str, Any]:
            running()
            md = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "llama")
            sized = condition(md, "Sized")
            assert sized and sized["status"] == "True", f"Sized condition {sized}"
            assert md["status"].get("observedGeneration") == md["metadata"]["generation"], md["status"]
            for read in (apps.read_namespaced_deployment, core.read_namespaced_service,
                         policy.read_namespaced_pod_disruption_budget):
                (owner,) = read("llama", namespace).metadata.owner_references
                assert owner.uid == created["metadata"]["uid"] and owner.controller
            return md
        await eventually(reconciled, timeout=60)

        def counted() -> str:
            running()
            with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as reply:
                metrics = reply.read().decode()
            assert sample(metrics, "neuroscale_reconciles_total", kind="ModelDeployment", result="ok") >= 1, metrics
            return metrics
        metrics = await eventually(counted, timeout=30)
        assert sample(metrics, "neuroscale_reconciles_total", kind="ModelDeployment", result="error") == 0
        for kind in ("Deployment", "Service", "PodDisruptionBudget"):
            assert sample(metrics, "neuroscale_child_writes_total", kind=kind, outcome="created") == 1, kind
        assert "neuroscale_reconcile_duration_seconds_bucket" in metrics

        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)

    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    refused = [line for line in output.splitlines() if REFUSED.search(line)]
    assert not refused, "the API server refused requests under the chart's Role:\n" + "\n".join(refused[:20])
