"""The InferenceCascade lifecycle on a real API server, with the operator running in-process.

Covers what the kmock-emulator cascade tests covered, on a real server: a cascade → gateway ConfigMap, Deployment
and Service owned by it (real uid), the config naming the ModelDeployment's Service and served model, an external
tier's key only as a secretKeyRef env var, the gateway image, args, probes and scrape annotations; per-tier status
with TiersReady=False naming the tier that is not ready; a ModelDeployment whose pods really run (on a fake inf2
node) turning TiersReady True by its own event, and Ready following the gateway pods kwok runs on the cpu nodes; a
missing CacheTier → CacheReady=False and no cache, then the CacheTier created → cache in the config and the live
gateway pods rolled to the new config hash; a spec the CRD's CEL rule rejects (modelName equal to a tier name)
answered 422, and a spec only the operator can judge (a refusal pattern that is no regular expression) →
Resolved=False with the gateway untouched; deletion → children removed, with the operator running and by the garbage
collector with it stopped. Plus: removing cacheTierRef takes the cache-tier label off the gateway pods, so the
CacheTier's NetworkPolicy stops admitting them; a user's annotation on the gateway Deployment survives, hand edits
of operator-owned fields are put back; a settled resync writes nothing; observedGeneration follows
metadata.generation after an update.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import kubernetes
import pytest

from tests.e2e.cluster import Apis, assert_settled_resync_writes_nothing, eventually, running_operator
from tests.support.factories import make_cache_tier, make_inference_cascade, make_model_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GROUP, VERSION = "neuroscale.io", "v1alpha1"
GATEWAY = "chat-gateway"
CACHE_LABEL = "neuroscale.io/cache-tier"
CONFIG_HASH = "neuroscale.io/config-hash"
GATEWAY_PODS = "neuroscale.io/inference-cascade=chat,app.kubernetes.io/component=gateway"
MODEL_PODS = "neuroscale.io/model-deployment=llama"
# A ModelDeployment whose pods no node can take: it stays Ready=False for as long as the test needs.
UNSCHEDULABLE = {"scheduling": {"nodeSelector": {"neuroscale.io/e2e": "no-such-node"}}}
CPU_NODES = {"cpu-a", "cpu-b"}
USER = "e2e-user"  # the field manager of the hand edits


class Cluster(Apis):
    """The test namespace's API views, with shortcuts for this kind; objects come back as camelCase dicts."""

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        # A real server assigns uid, generation and resourceVersion; it refuses a resourceVersion on create.
        body["metadata"] = {"name": body["metadata"]["name"], "namespace": self.namespace}
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body)

    def create_md(self, name: str = "llama", **spec: Any) -> dict[str, Any]:
        return self.create("modeldeployments", make_model_deployment(name, self.namespace, **spec))

    def create_ic(self, name: str = "chat", **spec: Any) -> dict[str, Any]:
        return self.create("inferencecascades", make_inference_cascade(name, self.namespace, **spec))

    def create_ct(self, name: str = "answers", **spec: Any) -> dict[str, Any]:
        return self.create("cachetiers", make_cache_tier(name, self.namespace, **spec))

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def ic(self, name: str = "chat") -> dict[str, Any]:
        return self.get("inferencecascades", name)

    def md(self, name: str = "llama") -> dict[str, Any]:
        return self.get("modeldeployments", name)

    def patch(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (null removes a field)."""
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name, patch)

    def delete(self, plural: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name,
                                                    propagation_policy="Background")

    def child(self, kind: str, name: str = GATEWAY) -> dict[str, Any] | None:
        """The live object as a dict, or None when absent."""
        readers = {"ConfigMap": self.core.read_namespaced_config_map,
                   "Deployment": self.apps.read_namespaced_deployment,
                   "Service": self.core.read_namespaced_service,
                   "NetworkPolicy": self.networking.read_namespaced_network_policy}
        try:
            return self.api.sanitize_for_serialization(readers[kind](name, self.namespace))
        except kubernetes.client.ApiException as exc:
            if exc.status != 404:
                raise
            return None

    def gateway(self) -> dict[str, dict[str, Any] | None]:
        return {kind: self.child(kind) for kind in ("ConfigMap", "Deployment", "Service")}

    def config(self) -> dict[str, Any]:
        return json.loads(self.child("ConfigMap")["data"]["gateway.json"])

    def template(self) -> dict[str, Any]:
        return self.child("Deployment")["spec"]["template"]

    def pods(self, selector: str = GATEWAY_PODS, *, terminating: bool = False) -> list[dict[str, Any]]:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return [self.api.sanitize_for_serialization(p) for p in pods
                if terminating or p.metadata.deletion_timestamp is None]

    def edit(self, kind: str, patch: list[dict[str, Any]] | dict[str, Any], name: str = GATEWAY) -> None:
        """A hand edit by another field manager, as `kubectl edit` would make it: a JSON patch (a list) or a JSON
        merge patch (a dict)."""
        patchers = {"ConfigMap": self.core.patch_namespaced_config_map,
                    "Deployment": self.apps.patch_namespaced_deployment}
        content_type = "application/json-patch+json" if isinstance(patch, list) else "application/merge-patch+json"
        patchers[kind](name, self.namespace, patch, field_manager=USER, _content_type=content_type)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether a LabelSelector (matchLabels and matchExpressions) selects an object with `labels`."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or ():
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if ((operator == "In" and labels.get(key) not in values) or (operator == "NotIn" and labels.get(key) in values)
                or (operator == "Exists" and key not in labels) or (operator == "DoesNotExist" and key in labels)):
            return False
    return True


def admits(policy: dict[str, Any], pod: dict[str, Any]) -> bool:
    """Whether the NetworkPolicy's ingress rules admit traffic from `pod` (a pod of the same namespace)."""
    for rule in policy["spec"].get("ingress") or ():
        peers = rule.get("from")
        if not peers:
            return True  # a rule without `from` admits every source
        for peer in peers:
            if "podSelector" in peer and "namespaceSelector" not in peer and "ipBlock" not in peer:
                if selects(peer["podSelector"], pod["metadata"].get("labels") or {}):
                    return True
    return False


@pytest.fixture
def cluster(api: Any, namespace: str) -> Cluster:
    return Cluster(api, namespace)


async def cascade_where(
    cluster: Cluster, predicate: Callable[[dict[str, Any]], Any], timeout: float = 90,
) -> dict[str, Any]:
    """The cascade once `predicate` holds for it, for its current generation."""
    def check() -> dict[str, Any] | None:
        ic = cluster.ic()
        fresh = (ic.get("status") or {}).get("observedGeneration") == ic["metadata"]["generation"]
        return ic if fresh and predicate(ic) else None
    return await eventually(check, timeout=timeout)


async def gateway_settled(cluster: Cluster, replicas: int = 2) -> dict[str, Any]:
    """The cascade once its gateway rollout is complete and the cascade reports it Ready."""
    def rolled_out() -> bool:
        deployment = cluster.child("Deployment")
        status = deployment["status"]
        return (status.get("observedGeneration") == deployment["metadata"]["generation"]
                and status.get("updatedReplicas") == status.get("availableReplicas") == status.get("replicas")
                == replicas and len(cluster.pods(terminating=True)) == replicas)
    await eventually(rolled_out, timeout=120)
    return await cascade_where(cluster, lambda ic: condition(ic, "Ready")["status"] == "True"
                               and ic["status"]["readyReplicas"] == ic["status"]["replicas"] == replicas, timeout=120)


async def test_gateway_is_rendered_from_resolved_tiers(cluster: Cluster) -> None:
    ns = cluster.namespace
    async with running_operator(ns) as runtime:
        await asyncio.to_thread(cluster.create_md, **UNSCHEDULABLE)
        await eventually(lambda: condition(cluster.md(), "Sized"))
        created = await asyncio.to_thread(cluster.create_ic)
        ic = await cascade_where(cluster, lambda ic: condition(ic, "TiersReady") and all(cluster.gateway().values()))
        children = await asyncio.to_thread(cluster.gateway)
        config = await asyncio.to_thread(cluster.config)

    for kind, child in children.items():
        (owner,) = child["metadata"]["ownerReferences"]
        assert owner["uid"] == created["metadata"]["uid"] and owner["kind"] == "InferenceCascade", kind
        assert owner["controller"] is True, kind
    small, large = config["tiers"]
    assert small["url"] == f"http://llama.{ns}.svc.cluster.local:8000/v1"
    assert small["model"] == "Llama-3.1-8B-Instruct"
    assert large == {**large, "kind": "openai", "url": "https://llm.example.com/v1", "model": "large-model"}
    assert config["model_name"] == "chat" and config.get("cache") is None

    pod = children["Deployment"]["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == runtime.config.gateway_image
    assert container["args"] == ["gateway", "--config", "/etc/neuroscale/gateway.json"]
    key_env = next(e for e in container["env"] if e["name"] == large["api_key_env"])
    assert key_env["valueFrom"]["secretKeyRef"] == {"name": "large-key", "key": "api-key"}
    assert "large-key" not in children["ConfigMap"]["data"]["gateway.json"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"
    assert children["Deployment"]["spec"]["replicas"] == 2

    tiers = {t["name"]: t for t in ic["status"]["tiers"]}
    assert tiers["large"]["ready"] == "Unknown" and "not probed" in tiers["large"]["message"]
    assert tiers["small"]["ready"] == "False"
    not_ready = condition(ic, "TiersReady")
    assert not_ready["status"] == "False" and "small" in not_ready["message"] and "large" not in not_ready["message"]
    assert ic["status"]["endpoint"] == f"http://{GATEWAY}.{ns}.svc.cluster.local:8080/v1"
    assert ic["status"]["observedGeneration"] == ic["metadata"]["generation"] == 1


async def test_model_deployment_readiness_and_gateway_availability_propagate(cluster: Cluster) -> None:
    # No periodic resync during the test: only the ModelDeployment's and the gateway Deployment's own events can
    # carry their readiness to the cascade.
    async with running_operator(cluster.namespace, resync_seconds=600):
        await asyncio.to_thread(cluster.create_md, **UNSCHEDULABLE)
        await asyncio.to_thread(cluster.create_ic)
        ic = await cascade_where(cluster, lambda ic: condition(ic, "TiersReady"))
        assert condition(ic, "TiersReady")["status"] == "False"

        # Let the model's pod schedule: the scheduler puts it on a fake inf2 node, kwok runs it, the Deployment
        # controller counts it ready, the ModelDeployment turns Ready, and its event re-reconciles the cascade.
        await asyncio.to_thread(cluster.patch, "modeldeployments", "llama",
                                {"spec": {"scheduling": {"nodeSelector": None}}})
        ic = await cascade_where(cluster, lambda ic: condition(ic, "TiersReady")["status"] == "True", timeout=120)
        assert {t["name"]: t["ready"] for t in ic["status"]["tiers"]} == {"small": "True", "large": "Unknown"}
        # The old, never scheduled pod may still be on its way out; the one that made the model Ready runs.
        model_pods = await asyncio.to_thread(cluster.pods, MODEL_PODS)
        (model_pod,) = [p for p in model_pods if p["status"]["phase"] == "Running"]
        assert model_pod["spec"]["nodeName"].startswith("inf2-")

        ic = await gateway_settled(cluster)
        gateway_pods = await asyncio.to_thread(cluster.pods)
    assert condition(ic, "Ready")["reason"] == "Available"
    assert ic["status"]["replicas"] == 2
    assert {p["spec"]["nodeName"] for p in gateway_pods} <= CPU_NODES
    assert all(p["status"]["phase"] == "Running" for p in gateway_pods)


async def test_missing_cache_then_created_rolls_the_gateway(cluster: Cluster) -> None:
    ns = cluster.namespace
    async with running_operator(ns):
        await asyncio.to_thread(cluster.create_ic, cacheTierRef={"name": "answers"})
        ic = await cascade_where(cluster, lambda ic: condition(ic, "CacheReady") and cluster.child("ConfigMap"))
        cache = condition(ic, "CacheReady")
        assert cache["status"] == "False" and cache["reason"] == "CacheTierNotFound" and "answers" in cache["message"]
        assert (await asyncio.to_thread(cluster.config)).get("cache") is None
        first_hash = (await asyncio.to_thread(cluster.template))["metadata"]["annotations"][CONFIG_HASH]
        await gateway_settled(cluster)

        await asyncio.to_thread(cluster.create_ct, isolation={"tenantHeader": "x-tenant-id"})
        await eventually(lambda: cluster.config().get("cache"))
        config = await asyncio.to_thread(cluster.config)
        assert config["cache"]["redis_url"] == f"redis://answers-redis.{ns}.svc.cluster.local:6379/0"
        assert config["cache"]["ttl_seconds"] == 600 and config["quotas"]["redis_url"] == config["cache"]["redis_url"]
        template = await eventually(lambda: (t := cluster.template())["metadata"]["annotations"][CONFIG_HASH]
                                    != first_hash and t)
        assert template["metadata"]["labels"][CACHE_LABEL] == "answers"
        new_hash = template["metadata"]["annotations"][CONFIG_HASH]
        # The running gateways really rolled: every pod left carries the new config hash.
        def rolled() -> bool:
            pods = cluster.pods(terminating=True)
            seen = [(p["metadata"]["name"], p["metadata"]["annotations"][CONFIG_HASH], p["status"].get("phase"),
                     p["spec"].get("nodeName"), p["metadata"].get("deletionTimestamp")) for p in pods]
            assert len(pods) == 2 and all(hash_ == new_hash for _, hash_, *_ in seen), (new_hash, seen)
            return True
        await eventually(rolled, timeout=120)
        # The Redis kwok runs turns the CacheTier Ready, and with it the cascade's CacheReady.
        ic = await cascade_where(cluster, lambda ic: condition(ic, "CacheReady")["status"] == "True", timeout=120)
    assert condition(ic, "CacheReady")["reason"] == "CacheTierReady"
    assert ic["status"]["cacheEndpoint"] == config["cache"]["redis_url"]


def test_api_server_rejects_a_model_name_equal_to_a_tier_name(cluster: Cluster) -> None:
    # The kmock emulator stored this and the operator answered Resolved=False; a real server's CEL rule refuses it.
    with pytest.raises(kubernetes.client.ApiException) as rejected:
        cluster.create_ic(modelName="small")
    assert rejected.value.status == 422
    assert "modelName must differ from every tier name" in rejected.value.body


async def test_unworkable_spec_keeps_the_gateway(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create_ic)
        await gateway_settled(cluster)
        before = {kind: child["metadata"]["resourceVersion"]
                  for kind, child in (await asyncio.to_thread(cluster.gateway)).items()}
        template = await asyncio.to_thread(cluster.template)
        # Schema-valid, so the API server stores it; only the operator finds the gateway could not load it.
        patched = await asyncio.to_thread(cluster.patch, "inferencecascades", "chat",
                                          {"spec": {"escalation": {"refusalPatterns": ["(unclosed"]}}})
        assert patched["metadata"]["generation"] == 2
        ic = await cascade_where(cluster, lambda ic: condition(ic, "Resolved")["status"] == "False")
        after = {kind: child["metadata"]["resourceVersion"]
                 for kind, child in (await asyncio.to_thread(cluster.gateway)).items()}
        assert await asyncio.to_thread(cluster.template) == template
    resolved = condition(ic, "Resolved")
    assert "(unclosed" in resolved["message"] and "regular expression" in resolved["message"]
    assert condition(ic, "Ready")["status"] == "False"
    # ConfigMap and Service are untouched; the Deployment's status may move (controller-manager), its spec must not.
    assert after["ConfigMap"] == before["ConfigMap"] and after["Service"] == before["Service"]


async def test_deleting_the_cascade_removes_its_children(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create_ic)
        await eventually(lambda: all(cluster.gateway().values()))
        await asyncio.to_thread(cluster.delete, "inferencecascades", "chat")
        await eventually(lambda: not any(cluster.gateway().values()), timeout=120)


async def test_children_are_garbage_collected_with_the_operator_stopped(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create_ic)
        await gateway_settled(cluster)
    # The operator is stopped: only the garbage collector can remove the gateway now, down to its pods.
    await asyncio.to_thread(cluster.delete, "inferencecascades", "chat")
    await eventually(lambda: not any(cluster.gateway().values()) and not cluster.pods(terminating=True), timeout=120)


async def test_removing_the_cache_tier_ref_takes_the_gateway_out_of_the_network_policy(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create_ct)
        await asyncio.to_thread(cluster.create_ic, cacheTierRef={"name": "answers"})
        await eventually(lambda: cluster.template()["metadata"]["labels"].get(CACHE_LABEL) == "answers")
        await gateway_settled(cluster)
        policy = await eventually(lambda: cluster.child("NetworkPolicy", "answers-redis"))
        pods = await asyncio.to_thread(cluster.pods)
        # The control: while bound, the policy admits every gateway pod.
        assert len(pods) == 2 and all(admits(policy, pod) for pod in pods)

        await asyncio.to_thread(cluster.patch, "inferencecascades", "chat", {"spec": {"cacheTierRef": None}})
        await eventually(lambda: CACHE_LABEL not in cluster.template()["metadata"]["labels"])

        def no_gateway_admitted() -> bool:
            live = cluster.child("NetworkPolicy", "answers-redis")
            pods = cluster.pods(terminating=True)
            return len(pods) == 2 and not any(admits(live, pod) for pod in pods)
        await eventually(no_gateway_admitted, timeout=120)
        ic = await cascade_where(cluster, lambda ic: condition(ic, "CacheReady") is None)
        config = await asyncio.to_thread(cluster.config)
    assert config.get("cache") is None
    assert "cacheEndpoint" not in ic["status"]


async def test_user_annotation_survives_and_hand_edits_are_reverted(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace) as runtime:
        await asyncio.to_thread(cluster.create_ic)
        await gateway_settled(cluster)
        config_data = (await asyncio.to_thread(cluster.child, "ConfigMap"))["data"]
        await asyncio.to_thread(cluster.edit, "Deployment",
                                {"metadata": {"annotations": {"example.com/owner": "team-a"}}})

        # A spec change makes the operator apply the Deployment for real; the user's annotation is not its field.
        await asyncio.to_thread(cluster.patch, "inferencecascades", "chat", {"spec": {"gateway": {"replicas": 3}}})
        await eventually(lambda: cluster.child("Deployment")["spec"]["replicas"] == 3)
        await cascade_where(cluster, lambda ic: ic["metadata"]["generation"] == 2)

        # Hand edits of fields the operator owns are put back.
        await asyncio.to_thread(cluster.edit, "Deployment", [
            {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "example.com/hijacked:1"}])
        await asyncio.to_thread(cluster.edit, "ConfigMap", [
            {"op": "replace", "path": "/data/gateway.json", "value": "{}"}])
        await eventually(lambda: cluster.template()["spec"]["containers"][0]["image"]
                         == runtime.config.gateway_image)
        await eventually(lambda: cluster.child("ConfigMap")["data"] == config_data)
        deployment = await asyncio.to_thread(cluster.child, "Deployment")
    assert deployment["metadata"]["annotations"]["example.com/owner"] == "team-a"
    assert deployment["spec"]["replicas"] == 3


async def test_settled_resync_writes_nothing(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace, resync_seconds=2.0) as runtime:
        await asyncio.to_thread(cluster.create_ic)
        await gateway_settled(cluster)

        def versions() -> dict[str, str]:
            return {"InferenceCascade": cluster.ic()["metadata"]["resourceVersion"],
                    **{kind: child["metadata"]["resourceVersion"] for kind, child in cluster.gateway().items()}}
        await assert_settled_resync_writes_nothing(runtime, cluster, "InferenceCascade", versions)


async def test_observed_generation_follows_an_update(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        created = await asyncio.to_thread(cluster.create_ic)
        assert created["metadata"]["generation"] == 1
        await cascade_where(cluster, lambda ic: condition(ic, "Ready"))
        patched = await asyncio.to_thread(cluster.patch, "inferencecascades", "chat",
                                          {"spec": {"gateway": {"replicas": 1}}})
        assert patched["metadata"]["generation"] == 2
        ic = await eventually(lambda: (c := cluster.ic())["status"].get("observedGeneration") == 2 and c)
        deployment = await asyncio.to_thread(cluster.child, "Deployment")
    assert ic["metadata"]["generation"] == 2
    assert {c["type"]: c["observedGeneration"] for c in ic["status"]["conditions"]} == {
        c["type"]: 2 for c in ic["status"]["conditions"]}
    assert deployment["spec"]["replicas"] == 1
