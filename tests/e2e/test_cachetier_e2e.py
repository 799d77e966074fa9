"""The CacheTier lifecycle on a real API server, with the operator running in-process.

Covers what the kmock-emulator CacheTier tests covered, on a real server: an inCluster CacheTier → Redis Deployment,
Service and NetworkPolicy owned by it (real uid; redis:7, non-root uid 999, maxmemory from the size bound with
allkeys-lru, no persistence, exec readiness probe; the policy admits only pods labelled with the cache tier, on the
Redis port) and a status with the endpoint; Ready follows the Redis Deployment (False while its pod cannot be
created, True once kwok runs it on a cpu node); switching to an external endpoint removes the Redis (down to its pod)
and reports the endpoint validated but not probed; both backends at once are refused by the CRD's CEL rule (422),
and a name the Redis cannot be named after → Resolved=False with no Redis; deleting the CacheTier removes its
children, with the operator running and by the garbage collector with it stopped; a settled resync writes nothing;
observedGeneration follows metadata.generation after an update.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kubernetes
import pytest

from tests.e2e.cluster import Apis, assert_settled_resync_writes_nothing, eventually, running_operator
from tests.support.factories import make_cache_tier

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GROUP, VERSION, PLURAL = "neuroscale.io", "v1alpha1", "cachetiers"
REDIS = "answers-redis"
REDIS_PODS = "neuroscale.io/cache-tier=answers,app.kubernetes.io/component=cache"
CPU_NODES = {"cpu-a", "cpu-b"}
CHILD_KINDS = ("Deployment", "Service", "NetworkPolicy")


class Cluster(Apis):
    """The test namespace's API views, with shortcuts for this kind; objects come back as camelCase dicts."""

    def create(self, name: str = "answers", **spec: Any) -> dict[str, Any]:
        body = make_cache_tier(name, self.namespace, **spec)
        # A real server assigns uid, generation and resourceVersion; it refuses a resourceVersion on create.
        body["metadata"] = {"name": name, "namespace": self.namespace}
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def ct(self, name: str = "answers") -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def patch(self, patch: dict[str, Any], name: str = "answers") -> dict[str, Any]:
        """A JSON merge patch (null removes a field)."""
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, patch)

    def delete(self, name: str = "answers") -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name,
                                                    propagation_policy="Background")

    def child(self, kind: str, name: str = REDIS) -> dict[str, Any] | None:
        """The live object as a dict, or None when absent."""
        readers = {"Deployment": self.apps.read_namespaced_deployment,
                   "Service": self.core.read_namespaced_service,
                   "NetworkPolicy": self.networking.read_namespaced_network_policy}
        try:
            return self.api.sanitize_for_serialization(readers[kind](name, self.namespace))
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
            return None

    def children(self, name: str = REDIS) -> dict[str, dict[str, Any] | None]:
        return {kind: self.child(kind, name) for kind in CHILD_KINDS}

    def pods(self) -> list[dict[str, Any]]:
        """The Redis pods, terminating ones included."""
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=REDIS_PODS).items
        return [self.api.sanitize_for_serialization(p) for p in pods]


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


@pytest.fixture
def cluster(api: Any, namespace: str) -> Cluster:
    return Cluster(api, namespace)


async def settled(cluster: Cluster, name: str = "answers") -> dict[str, Any]:
    """The CacheTier once it has its children and a Ready condition for its current generation."""
    def ready() -> dict[str, Any] | None:
        ct = cluster.ct(name)
        fresh = (ct.get("status") or {}).get("observedGeneration") == ct["metadata"]["generation"]
        return ct if fresh and condition(ct, "Ready") and all(cluster.children().values()) else None
    return await eventually(ready, timeout=90)


async def redis_ready(cluster: Cluster) -> dict[str, Any]:
    """The CacheTier once the Redis rollout is complete and the CacheTier reports it Ready."""
    def rolled_out() -> bool:
        deployment = cluster.child("Deployment")
        status = deployment["status"]
        return (status.get("observedGeneration") == deployment["metadata"]["generation"]
                and status.get("updatedReplicas") == status.get("availableReplicas") == status.get("replicas") == 1
                and len(cluster.pods()) == 1)
    await eventually(rolled_out, timeout=120)
    return await eventually(lambda: (c := cluster.ct()) and condition(c, "Ready")["status"] == "True" and c,
                            timeout=60)


async def test_in_cluster_redis_is_rendered_owned_and_reported(cluster: Cluster) -> None:
    ns = cluster.namespace
    async with running_operator(ns):
        created = await asyncio.to_thread(cluster.create)
        ct = await settled(cluster)
        children = await asyncio.to_thread(cluster.children)

    for kind, child in children.items():
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner["uid"] == created["metadata"]["uid"] and owner["kind"] == "CacheTier", kind
        assert owner["controller"] is True, kind
    pod = children["Deployment"]["spec"]["template"]["spec"]
    (redis,) = pod["containers"]
    assert redis["image"] == "redis:7"
    assert redis["securityContext"]["runAsUser"] == 999 and redis["securityContext"]["runAsNonRoot"] is True
    args = redis["args"]
    assert args[args.index("--maxmemory") + 1] == "128mb"
    assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert args[args.index("--appendonly") + 1] == "no" and args[args.index("--save") + 1] == ""
    assert redis["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
    policy = children["NetworkPolicy"]
    assert policy["spec"]["podSelector"]["matchLabels"]["neuroscale.io/cache-tier"] == "answers"
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["from"] == [{"podSelector": {"matchLabels": {"neuroscale.io/cache-tier": "answers"}}}]
    assert ingress["ports"] == [{"protocol": "TCP", "port": 6379}]
    assert ct["status"]["endpoint"] == f"redis://{REDIS}.{ns}.svc.cluster.local:6379/0"
    assert ct["status"]["backend"] == "inCluster"
    assert ct["status"]["observedGeneration"] == ct["metadata"]["generation"] == 1


async def test_ready_follows_the_redis_deployment(cluster: Cluster) -> None:
    # While a quota allows no pod in the namespace, the ReplicaSet cannot create the Redis pod.
    quota = {"metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}}
    await asyncio.to_thread(cluster.core.create_namespaced_resource_quota, cluster.namespace, quota)
    await eventually(lambda: cluster.core.read_namespaced_resource_quota("no-pods", cluster.namespace).status.hard)
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create)
        ct = await settled(cluster)
        assert condition(ct, "Ready")["status"] == "False" and condition(ct, "Ready")["reason"] == "WaitingForPods"
        assert await asyncio.to_thread(cluster.pods) == []

        await asyncio.to_thread(cluster.core.delete_namespaced_resource_quota, "no-pods", cluster.namespace)
        ct = await redis_ready(cluster)
        (pod,) = await asyncio.to_thread(cluster.pods)
    ready = condition(ct, "Ready")
    assert ready["reason"] == "Available" and ct["status"]["endpoint"] in ready["message"]
    assert pod["spec"]["nodeName"] in CPU_NODES and pod["status"]["phase"] == "Running"


async def test_switching_to_external_removes_redis(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create)
        await redis_ready(cluster)
        external = {"url": "rediss://cache.abc123.use1.cache.amazonaws.com:6379/0",
                    "passwordSecretRef": {"name": "redis-auth", "key": "password"}}
        patched = await asyncio.to_thread(cluster.patch, {"spec": {"backend": {"inCluster": None,
                                                                               "external": external}}})
        # The API server fills in the schema's default (a single Redis, not a cluster).
        assert patched["spec"]["backend"] == {"external": {**external, "clusterMode": False}}
        await eventually(lambda: not any(cluster.children().values()) and not cluster.pods(), timeout=120)
        ct = await eventually(lambda: (c := cluster.ct())["status"].get("backend") == "external"
                              and c["status"]["observedGeneration"] == 2 and c)
    assert ct["status"]["endpoint"] == external["url"]
    ready = condition(ct, "Ready")
    assert ready["status"] == "True" and ready["reason"] == "ExternalEndpoint"
    assert "not probed" in ready["message"]


def test_api_server_rejects_both_backends(cluster: Cluster) -> None:
    # The kmock emulator stored this and the operator answered Resolved=False; a real server's CEL rule refuses it.
    with pytest.raises(kubernetes.client.ApiException) as rejected:
        cluster.create(backend={"external": {"url": "redis://r:6379/0"}})
    assert rejected.value.status == 422
    assert "set exactly one of inCluster or external" in rejected.value.body


async def test_a_name_the_redis_cannot_take_is_reported(cluster: Cluster) -> None:
    # A valid CacheTier name (a DNS subdomain) that cannot name a Service (a DNS label): only the operator knows.
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create, "answers.v2")
        ct = await eventually(lambda: (c := cluster.ct("answers.v2")) and condition(c, "Resolved") and c)
        children = await asyncio.to_thread(cluster.children, "answers.v2-redis")
    resolved = condition(ct, "Resolved")
    assert resolved["status"] == "False" and resolved["reason"] == "InvalidSpec"
    assert "answers.v2-redis" in resolved["message"]
    assert condition(ct, "Ready")["status"] == "False"
    assert not any(children.values())


async def test_deleting_the_cache_tier_removes_redis(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create)
        await settled(cluster)
        await asyncio.to_thread(cluster.delete)
        await eventually(lambda: not any(cluster.children().values()), timeout=120)


async def test_children_are_garbage_collected_with_the_operator_stopped(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create)
        await redis_ready(cluster)
    # The operator is stopped: only the garbage collector can remove the Redis now, down to its pod.
    await asyncio.to_thread(cluster.delete)
    await eventually(lambda: not any(cluster.children().values()) and not cluster.pods(), timeout=120)


async def test_settled_resync_writes_nothing(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace, resync_seconds=2.0) as runtime:
        await asyncio.to_thread(cluster.create)
        await redis_ready(cluster)

        def versions() -> dict[str, str]:
            return {"CacheTier": cluster.ct()["metadata"]["resourceVersion"],
                    **{kind: child["metadata"]["resourceVersion"] for kind, child in cluster.children().items()}}
        await assert_settled_resync_writes_nothing(runtime, cluster, "CacheTier", versions)


async def test_observed_generation_follows_an_update(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        created = await asyncio.to_thread(cluster.create)
        assert created["metadata"]["generation"] == 1
        await settled(cluster)
        patched = await asyncio.to_thread(cluster.patch, {"spec": {"maxMemoryMB": 256}})
        assert patched["metadata"]["generation"] == 2
        ct = await eventually(lambda: (c := cluster.ct())["status"].get("observedGeneration") == 2 and c)
        deployment = await asyncio.to_thread(cluster.child, "Deployment")
    (redis,) = deployment["spec"]["template"]["spec"]["containers"]
    args = redis["args"]
    assert ct["metadata"]["generation"] == 2
    assert {c["type"]: c["observedGeneration"] for c in ct["status"]["conditions"]} == {
        c["type"]: 2 for c in ct["status"]["conditions"]}
    assert args[args.index("--maxmemory") + 1] == "256mb"
