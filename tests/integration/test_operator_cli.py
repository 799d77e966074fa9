"""`neuroscale run` as a real subprocess against the kmock emulator (KUBECONFIG pointing at it).

Covers: the operator process logs in from the kubeconfig, watches --namespace, and turns a new ModelDeployment into
its Deployment and Service with a Sized status; kopf's liveness endpoint answers on --health-port (/healthz); our
Prometheus counters (neuroscale_reconciles_total, neuroscale_child_writes_total) are served on --metrics-port and
count what happened; SIGTERM stops the process cleanly (exit code 0, no traceback).

The emulator refuses the cluster-wide namespace list with 403, as an API server enforcing the chart's namespaced
RBAC does: kopf then falls back to the namespaces it was given (kmock itself cannot serve that path). kopf retries
that 403 with its backoff (about 55 s) before falling back, hence the long waits below.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp.web
import kmock
import pytest

from tests.support.factories import make_model_deployment
from tests.support.kube import NAMESPACE, Emulator, declare_resources, eventually, stored, write_kubeconfig

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
MD, DEPLOY, SVC = "neuroscale.io/v1alpha1/modeldeployments", "apps/v1/deployments", "v1/services"
BASE = f"/apis/neuroscale.io/v1alpha1/namespaces/{NAMESPACE}/modeldeployments"


class NamespacedRbacEmulator(Emulator):
    """The tests' emulator, answering the cluster-wide namespace list as a namespaced-RBAC API server would."""

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.path.rstrip("/") == "/api/v1/namespaces":
            return aiohttp.web.json_response(status=403, data={
                "apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403,
                "message": 'namespaces is forbidden: cannot list resource "namespaces" at the cluster scope'})
        return await super().__call__(raw_request)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.asynccontextmanager
async def operator_process(kubeconfig: Path, log: Path, metrics_port: int, health_port: int,
                           ) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "neuroscale", "run", "--namespace", NAMESPACE,
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


async def test_run_reconciles_serves_health_and_metrics_and_stops_on_sigterm(tmp_path: Path) -> None:
    metrics_port, health_port = free_port(), free_port()
    log = tmp_path / "operator.log"
    async with NamespacedRbacEmulator() as server, kmock.Server(server):
        declare_resources(server)
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(server.url))
        async with operator_process(kubeconfig, log, metrics_port, health_port) as process:
            def running() -> bool:
                assert process.returncode is None, f"neuroscale run exited early:\n{log.read_text()[-3000:]}"
                return True

            async def healthy() -> bool:
                with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                    return (await get_text(f"http://127.0.0.1:{health_port}/healthz"))[0] == 200
                return False

            for _ in range(300):
                running()
                if await healthy():
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail(f"/healthz never answered 200:\n{log.read_text()[-3000:]}")

            async with server.post(BASE, json=make_model_deployment()) as response:
                assert response.status < 300, await response.text()

            def reconciled() -> Any:
                running()
                md = stored(server, MD, "llama")
                conditions = (md or {}).get("status", {}).get("conditions", [])
                return (any(c["type"] == "Sized" and c["status"] == "True" for c in conditions)
                        and stored(server, DEPLOY, "llama") and stored(server, SVC, "llama"))
            await eventually(reconciled, timeout=100)

            status, metrics = await get_text(f"http://127.0.0.1:{metrics_port}/metrics")
            assert status == 200
            assert sample(metrics, "neuroscale_reconciles_total", kind="ModelDeployment", result="ok") >= 1
            assert sample(metrics, "neuroscale_child_writes_total", kind="Deployment", outcome="created") == 1
            assert sample(metrics, "neuroscale_child_writes_total", kind="Service", outcome="created") == 1
            assert "neuroscale_reconcile_duration_seconds_bucket" in metrics

            process.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(process.wait(), 30)
    output = log.read_text()
    assert code == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
