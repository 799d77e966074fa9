"""The Argo CD health checks (helm/neuroscale/files/argocd-health/) on the objects the real API server holds.

Covers: a ModelDeployment whose pods run is Healthy; right after a spec change, before the operator has observed
it, Progressing; a spec sizing cannot satisfy is Degraded with the reason; scaled to zero is Suspended; an
InferenceCascade whose gateway runs and a CacheTier whose Redis runs are Healthy; a cascade with a tier whose
ModelDeployment does not exist still serves (it escalates past that tier), so it is Healthy and the message names
the missing tier. Each script runs in a real Lua 5.1 as Argo CD runs it (tests/support/argocd.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.e2e.cluster import eventually, running_operator
from tests.e2e.test_modeldeployment_e2e import GROUP, VERSION, Cluster
from tests.support.argocd import run_health, scripts
from tests.support.factories import make_cache_tier, make_inference_cascade

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


@pytest.fixture
def cluster(control_plane: Any, api: Any, namespace: str) -> Cluster:
    if control_plane is None:
        pytest.skip("Healthy needs pods that run: the suite's kwok nodes (an external cluster may have none)")
    return Cluster(api, namespace)


def health(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return run_health(scripts()[kind], obj)


def create(cluster: Cluster, plural: str, body: dict[str, Any]) -> None:
    body["metadata"] = {"name": body["metadata"]["name"], "namespace": cluster.namespace}
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, cluster.namespace, plural, body)


def get(cluster: Cluster, plural: str, name: str) -> dict[str, Any]:
    return cluster.custom.get_namespaced_custom_object(GROUP, VERSION, cluster.namespace, plural, name)


async def health_becomes(cluster: Cluster, kind: str, plural: str, name: str, status: str) -> dict[str, Any]:
    return await eventually(lambda: (h := health(kind, get(cluster, plural, name)))["status"] == status and h,
                            timeout=90)


async def test_model_deployment_health_through_its_life(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create)
        await health_becomes(cluster, "ModelDeployment", "modeldeployments", "llama", "Healthy")
    # The operator is stopped: a spec change stays unobserved.
    await asyncio.to_thread(cluster.patch, {"spec": {"batching": {"maxNumSeqs": 16}}})
    stale = health("ModelDeployment", await asyncio.to_thread(cluster.md))
    assert stale["status"] == "Progressing" and "generation 2" in stale["message"]
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.patch, {"spec": {
            "model": {"source": "hf://meta-llama/Llama-3.3-70B-Instruct"}, "accelerator": {"instanceType": "inf2.xlarge"}}})
        degraded = await health_becomes(cluster, "ModelDeployment", "modeldeployments", "llama", "Degraded")
        assert "inf2.xlarge" in degraded["message"]
        await asyncio.to_thread(cluster.patch, {"spec": {"model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct"},
                                                         "accelerator": {"instanceType": None}, "replicas": 0}})
        await health_becomes(cluster, "ModelDeployment", "modeldeployments", "llama", "Suspended")


async def test_cascade_and_cache_tier_health(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create)
        await asyncio.to_thread(create, cluster, "cachetiers", make_cache_tier())
        cascade = make_inference_cascade(cacheTierRef={"name": "answers"},
                                         tiers=[{"name": "small", "modelDeployment": {"name": "llama"}}])
        await asyncio.to_thread(create, cluster, "inferencecascades", cascade)
        await health_becomes(cluster, "CacheTier", "cachetiers", "answers", "Healthy")
        await health_becomes(cluster, "InferenceCascade", "inferencecascades", "chat", "Healthy")
        partial = make_inference_cascade("partial", tiers=[{"name": "small", "modelDeployment": {"name": "missing"}},
                                                           {"name": "large", "modelDeployment": {"name": "llama"}}])
        await asyncio.to_thread(create, cluster, "inferencecascades", partial)
        verdict = await health_becomes(cluster, "InferenceCascade", "inferencecascades", "partial", "Healthy")
    assert "missing" in verdict["message"], verdict
