"""The operator against the kmock Kubernetes emulator: the CacheTier lifecycle over real HTTP.

Covers: an inCluster CacheTier → Redis Deployment + Service owned by it (redis:7, non-root uid 999, maxmemory from
the size bound with allkeys-lru, no persistence, exec readiness probe) and a status with the endpoint; Ready follows
the Redis Deployment; switching to an external endpoint removes the Redis and reports the endpoint as validated but
not probed; deleting the CacheTier removes its children; a settled resync writes nothing.
"""

from __future__ import annotations

import asyncio


from tests.support.factories import make_cache_tier
from tests.support.kube import NAMESPACE, condition, eventually, running_operator, stored

CT = "neuroscale.io/v1alpha1/cachetiers"
DEPLOY, SVC = "apps/v1/deployments", "v1/services"
BASE = f"/apis/neuroscale.io/v1alpha1/namespaces/{NAMESPACE}/cachetiers"


async def create(server, body):
    async with server.post(BASE, json=body) as response:
        assert response.status < 300, await response.text()


async def settled(server, name="answers"):
    def ready():
        ct = stored(server, CT, name)
        return ct and condition(ct, "Ready") and stored(server, DEPLOY, f"{name}-redis") and ct
    return await eventually(ready)


async def test_in_cluster_redis_is_rendered_owned_and_reported(cluster):
    server, kubeconfig = cluster
    body = make_cache_tier()
    async with running_operator(kubeconfig):
        await create(server, body)
        ct = await settled(server)
        for resource in (DEPLOY, SVC):
            (owner,) = stored(server, resource, "answers-redis")["metadata"]["ownerReferences"]
            assert owner["uid"] == body["metadata"]["uid"] and owner["kind"] == "CacheTier"
        pod = stored(server, DEPLOY, "answers-redis")["spec"]["template"]["spec"]
        (redis,) = pod["containers"]
        assert redis["image"] == "redis:7"
        assert redis["securityContext"]["runAsUser"] == 999 and redis["securityContext"]["runAsNonRoot"] is True
        args = redis["args"]
        assert args[args.index("--maxmemory") + 1] == "128mb"
        assert args[args.index("--maxmemory-policy") + 1] == "allkeys-lru"
        assert args[args.index("--appendonly") + 1] == "no" and args[args.index("--save") + 1] == ""
        assert redis["readinessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
        policy = await eventually(lambda: stored(server, "networking.k8s.io/v1/networkpolicies", "answers-redis"))
        assert policy["spec"]["podSelector"]["matchLabels"]["neuroscale.io/cache-tier"] == "answers"
        (ingress,) = policy["spec"]["ingress"]
        assert ingress["from"] == [{"podSelector": {"matchLabels": {"neuroscale.io/cache-tier": "answers"}}}]
        assert ingress["ports"] == [{"protocol": "TCP", "port": 6379}]
        assert ct["status"]["endpoint"] == f"redis://answers-redis.{NAMESPACE}.svc.cluster.local:6379/0"
        assert ct["status"]["backend"] == "inCluster"
        assert condition(ct, "Ready")["status"] == "False"  # no kubelet: Redis is not ready yet


async def test_ready_follows_the_redis_deployment(cluster):
    server, kubeconfig = cluster
    async with running_operator(kubeconfig):
        await create(server, make_cache_tier())
        await settled(server)
        url = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/answers-redis/status"
        async with server.patch(url, json={"status": {"replicas": 1, "readyReplicas": 1}}) as response:
            assert response.status < 300
        ct = await eventually(lambda: (c := stored(server, CT, "answers")) and
                              condition(c, "Ready")["status"] == "True" and c)
        assert condition(ct, "Ready")["reason"] == "Available"


async def test_switching_to_external_removes_redis(cluster):
    server, kubeconfig = cluster
    async with running_operator(kubeconfig):
        await create(server, make_cache_tier())
        await settled(server)
        external = {"url": "rediss://cache.abc123.use1.cache.amazonaws.com:6379/0",
                    "passwordSecretRef": {"name": "redis-auth", "key": "password"}}
        async with server.patch(f"{BASE}/answers", json={"spec": {"backend": {"inCluster": None,
                                                                             "external": external}}}) as response:
            assert response.status < 300
        await eventually(lambda: stored(server, DEPLOY, "answers-redis") is None
                         and stored(server, SVC, "answers-redis") is None
                         and stored(server, "networking.k8s.io/v1/networkpolicies", "answers-redis") is None)
        ct = await eventually(lambda: (c := stored(server, CT, "answers")) and
                              c["status"].get("backend") == "external" and c)
        assert ct["status"]["endpoint"] == external["url"]
        ready = condition(ct, "Ready")
        assert ready["status"] == "True" and ready["reason"] == "ExternalEndpoint"
        assert "not probed" in ready["message"]


async def test_invalid_backend_is_reported(cluster):
    server, kubeconfig = cluster
    async with running_operator(kubeconfig):
        # Both backends: the CRD's CEL rule rejects this on a real API server; the emulator stores it.
        await create(server, make_cache_tier(backend={"external": {"url": "redis://r:6379/0"}}))
        ct = await eventually(lambda: (c := stored(server, CT, "answers")) and condition(c, "Resolved") and c)
        resolved = condition(ct, "Resolved")
        assert resolved["status"] == "False" and "exactly one of inCluster or external" in resolved["message"]
        assert stored(server, DEPLOY, "answers-redis") is None


async def test_deleting_the_cache_tier_removes_redis(cluster):
    server, kubeconfig = cluster
    async with running_operator(kubeconfig):
        await create(server, make_cache_tier())
        await settled(server)
        async with server.delete(f"{BASE}/answers") as response:
            assert response.status < 300
        await eventually(lambda: all(stored(server, r, "answers-redis") is None for r in (DEPLOY, SVC)))


async def test_settled_resync_writes_nothing(cluster):
    server, kubeconfig = cluster
    async with running_operator(kubeconfig) as runtime:
        await create(server, make_cache_tier())
        await settled(server)
        await asyncio.sleep(3)
        before = runtime.kube.writes.total
        await asyncio.sleep(5)
        assert runtime.kube.writes.total == before, runtime.kube.writes.counts
