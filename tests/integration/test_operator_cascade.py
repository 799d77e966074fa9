"""The operator against the kmock Kubernetes emulator: the InferenceCascade lifecycle over real HTTP.

Covers: a cascade → gateway ConfigMap/Deployment/Service owned by it, the config naming the ModelDeployment's
Service and served model, an external tier's key only as a secretKeyRef env var (never in the ConfigMap), the
neuroscale image with the gateway args, probes and scrape annotations; per-tier status with a TiersReady=False that
names the tier not ready; the ModelDeployment becoming Ready re-reconciles the cascade (TiersReady=True); a missing
CacheTier → CacheReady=False and no cache in the config, then the CacheTier created → cache in the config and the
pods rolled (config hash); Ready follows the gateway Deployment; a spec that cannot work → Resolved=False with the
gateway untouched; deleting the cascade removes its children.
"""

from __future__ import annotations

import json


from tests.support.factories import make_cache_tier, make_inference_cascade, make_model_deployment
from tests.support.kube import NAMESPACE, condition, eventually, running_operator, stored

IC, MD = "neuroscale.io/v1alpha1/inferencecascades", "neuroscale.io/v1alpha1/modeldeployments"
DEPLOY, SVC, CM = "apps/v1/deployments", "v1/services", "v1/configmaps"
API = f"/apis/neuroscale.io/v1alpha1/namespaces/{NAMESPACE}"
GATEWAY = "chat-gateway"


async def create(server, plural, body):
    async with server.post(f"{API}/{plural}", json=body) as response:
        assert response.status < 300, await response.text()


async def patch_status(server, path, status):
    async with server.patch(f"{path}/status", json={"status": status}) as response:
        assert response.status < 300, await response.text()


def gateway_config(server):
    return json.loads(stored(server, CM, GATEWAY)["data"]["gateway.json"])


def pod_template(server):
    return stored(server, DEPLOY, GATEWAY)["spec"]["template"]


async def cascade_where(server, predicate):
    return await eventually(lambda: (ic := stored(server, IC, "chat")) and predicate(ic) and ic)


async def test_gateway_is_rendered_from_resolved_tiers(cluster):
    server, kubeconfig = cluster
    body = make_inference_cascade()
    async with running_operator(kubeconfig) as runtime:
        await create(server, "modeldeployments", make_model_deployment())
        await create(server, "inferencecascades", body)
        ic = await cascade_where(server, lambda ic: condition(ic, "TiersReady") and stored(server, CM, GATEWAY))

        for resource in (CM, DEPLOY, SVC):
            (owner,) = stored(server, resource, GATEWAY)["metadata"]["ownerReferences"]
            assert owner["uid"] == body["metadata"]["uid"] and owner["kind"] == "InferenceCascade"
        config = gateway_config(server)
        small, large = config["tiers"]
        assert small["url"] == f"http://llama.{NAMESPACE}.svc.cluster.local:8000/v1"
        assert small["model"] == "Llama-3.1-8B-Instruct"
        assert large == {**large, "kind": "openai", "url": "https://llm.example.com/v1", "model": "large-model"}
        assert config["model_name"] == "chat" and config.get("cache") is None

        pod = pod_template(server)
        (container,) = pod["spec"]["containers"]
        assert container["image"] == runtime.config.gateway_image
        assert container["args"] == ["gateway", "--config", "/etc/neuroscale/gateway.json"]
        key_env = next(e for e in container["env"] if e["name"] == large["api_key_env"])
        assert key_env["valueFrom"]["secretKeyRef"] == {"name": "large-key", "key": "api-key"}
        assert "large-key" not in stored(server, CM, GATEWAY)["data"]["gateway.json"]
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
        assert stored(server, DEPLOY, GATEWAY)["spec"]["replicas"] == 2

        tiers = {t["name"]: t for t in ic["status"]["tiers"]}
        assert tiers["large"]["ready"] == "Unknown" and "not probed" in tiers["large"]["message"]
        assert tiers["small"]["ready"] == "False"
        not_ready = condition(ic, "TiersReady")
        assert not_ready["status"] == "False" and "small" in not_ready["message"] and "large" not in not_ready["message"]
        assert ic["status"]["endpoint"] == f"http://{GATEWAY}.{NAMESPACE}.svc.cluster.local:8080/v1"
        assert condition(ic, "Ready")["status"] == "False"  # no gateway replica is available yet


async def test_model_deployment_readiness_and_gateway_availability_propagate(cluster):
    server, kubeconfig = cluster
    async with running_operator(kubeconfig):
        await create(server, "modeldeployments", make_model_deployment())
        await create(server, "inferencecascades", make_inference_cascade())
        await cascade_where(server, lambda ic: condition(ic, "TiersReady"))
        await eventually(lambda: stored(server, DEPLOY, "llama"))
        # Play the Deployment controller for the model: it becomes Ready, and the cascade must notice.
        await patch_status(server, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/llama",
                           {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1})
        ic = await cascade_where(server, lambda ic: condition(ic, "TiersReady")["status"] == "True")
        assert {t["name"]: t["ready"] for t in ic["status"]["tiers"]} == {"small": "True", "large": "Unknown"}

        await patch_status(server, f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/{GATEWAY}",
                           {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2})
        ic = await cascade_where(server, lambda ic: condition(ic, "Ready")["status"] == "True")
        assert ic["status"]["readyReplicas"] == 2


async def test_missing_cache_then_created_rolls_the_gateway(cluster):
    server, kubeconfig = cluster
    async with running_operator(kubeconfig):
        await create(server, "inferencecascades", make_inference_cascade(cacheTierRef={"name": "answers"}))
        ic = await cascade_where(server, lambda ic: condition(ic, "CacheReady") and stored(server, CM, GATEWAY))
        cache = condition(ic, "CacheReady")
        assert cache["status"] == "False" and cache["reason"] == "CacheTierNotFound" and "answers" in cache["message"]
        assert gateway_config(server).get("cache") is None
        first_hash = pod_template(server)["metadata"]["annotations"]["neuroscale.io/config-hash"]

        await create(server, "cachetiers", make_cache_tier(isolation={"tenantHeader": "x-tenant-id"}))
        await eventually(lambda: gateway_config(server).get("cache"))
        config = gateway_config(server)
        assert config["cache"]["redis_url"] == f"redis://answers-redis.{NAMESPACE}.svc.cluster.local:6379/0"
        assert config["cache"]["ttl_seconds"] == 600 and config["tenant_header"] == "x-tenant-id"
        await eventually(lambda: pod_template(server)["metadata"]["annotations"]["neuroscale.io/config-hash"]
                         != first_hash)
        assert pod_template(server)["metadata"]["labels"]["neuroscale.io/cache-tier"] == "answers"
        ic = await cascade_where(server, lambda ic: condition(ic, "CacheReady")["reason"] != "CacheTierNotFound")
        assert ic["status"]["cacheEndpoint"] == config["cache"]["redis_url"]


async def test_unworkable_spec_keeps_gateway_and_deletion_removes_children(cluster):
    server, kubeconfig = cluster
    async with running_operator(kubeconfig):
        await create(server, "inferencecascades", make_inference_cascade())
        await eventually(lambda: stored(server, DEPLOY, GATEWAY))
        before = pod_template(server)
        # A tier named like the cascade's model name: the gateway could not tell them apart.
        async with server.patch(f"{API}/inferencecascades/chat", json={"spec": {"modelName": "small"}}) as response:
            assert response.status < 300
        ic = await cascade_where(server, lambda ic: condition(ic, "Resolved")["status"] == "False")
        assert "small" in condition(ic, "Resolved")["message"] and condition(ic, "Ready")["status"] == "False"
        assert pod_template(server) == before

        async with server.delete(f"{API}/inferencecascades/chat") as response:
            assert response.status < 300
        await eventually(lambda: all(stored(server, r, GATEWAY) is None for r in (CM, DEPLOY, SVC)))
