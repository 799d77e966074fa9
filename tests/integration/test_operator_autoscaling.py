"""Token-throughput autoscaling end to end: kmock emulator + a real Prometheus scraping engine exporters.

Covers: the operator reads vLLM's real metric names through a real Prometheus and scales the Deployment up when
generated tokens/s exceed what the replicas should carry, then back down when demand falls; status reports the
observed tokens/s, the decision and its reason, and an Autoscaling condition; when Prometheus goes away the replicas
are held (never scaled down or to zero on missing data), the condition says why, and scaling resumes by itself when
Prometheus returns.
"""

from __future__ import annotations

import pytest

from neuroscale.runtime import OperatorConfig
from tests.support.engine_exporter import EngineExporter
from tests.support.factories import make_model_deployment
from tests.support.kube import NAMESPACE, emulator, eventually, running_operator, stored, write_kubeconfig
from tests.support.prometheus_server import pod_target

MD, DEPLOY = "neuroscale.io/v1alpha1/modeldeployments", "apps/v1/deployments"
BASE = f"/apis/neuroscale.io/v1alpha1/namespaces/{NAMESPACE}/modeldeployments"

pytestmark = pytest.mark.timeout(240)


def replicas(server):
    deployment = stored(server, DEPLOY, "llama")
    return deployment and deployment["spec"]["replicas"]


def autoscaling_condition(server):
    md = stored(server, MD, "llama") or {}
    return next((c for c in (md.get("status") or {}).get("conditions", []) if c["type"] == "Autoscaling"), None)


async def test_scales_with_token_throughput_and_holds_without_metrics(prometheus_factory, tmp_path):
    # Two pods of the Deployment `llama`, as Prometheus sees them through a PodMonitor.
    with EngineExporter("vllm", tokens_per_second=150) as pod_a, EngineExporter("vllm", tokens_per_second=150) as pod_b:
        prometheus = prometheus_factory(targets=[
            pod_target(pod_a.address, NAMESPACE, "llama-5d8f7c9b4-abcde"),
            pod_target(pod_b.address, NAMESPACE, "llama-5d8f7c9b4-fghij"),
        ])
        config = OperatorConfig(resync_seconds=5.0, autoscale_interval_seconds=1.0, prometheus_url=prometheus.url,
                                prometheus_rate_window="5s")
        body = make_model_deployment(replicas=1, autoscaling={
            "minReplicas": 1, "maxReplicas": 8, "targetTokensPerSecond": 100, "coldStartSeconds": 0,
            "scaleDownStabilizationSeconds": 3, "predictive": False})
        async with emulator() as server:
            kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(server.url))
            async with running_operator(kubeconfig, config):
                async with server.post(BASE, json=body) as response:
                    assert response.status < 300

                # 300 tokens/s against 100 per replica: at least three replicas.
                await eventually(lambda: (replicas(server) or 0) >= 3, timeout=60)
                await eventually(lambda: stored(server, MD, "llama")["status"]["autoscaling"][
                    "observedTokensPerSecond"] == pytest.approx(300, rel=0.2), timeout=30)
                scaled_up = [e.raw for key, e in server.objects.items()
                             if key[0].plural == "events" and e.raw.get("reason") == "ScaledUp"]
                assert scaled_up and all("tok/s" in e["message"] for e in scaled_up)
                assert stored(server, MD, "llama")["status"]["autoscaling"]["lastScaleTime"]
                assert autoscaling_condition(server)["status"] == "True"
                assert replicas(server) <= 8

                # Demand falls to 60 tokens/s in total: back to one replica.
                pod_a.set_tokens_per_second(30)
                pod_b.set_tokens_per_second(30)
                await eventually(lambda: replicas(server) == 1, timeout=60)

                # Demand rises again, then Prometheus disappears: replicas are held, the condition says why.
                pod_a.set_tokens_per_second(200)
                pod_b.set_tokens_per_second(200)
                await eventually(lambda: (replicas(server) or 0) >= 4, timeout=60)
                held = replicas(server)
                prometheus.stop()
                condition = await eventually(
                    lambda: (c := autoscaling_condition(server)) and c["status"] == "False" and c, timeout=30)
                assert condition["reason"] == "MetricsUnavailable"
                assert "unreachable" in condition["message"].lower() or "prometheus" in condition["message"].lower()
                assert replicas(server) == held

                # Prometheus is back: the condition recovers without anyone touching the resource.
                prometheus.start()
                await eventually(lambda: autoscaling_condition(server)["status"] == "True", timeout=60)
