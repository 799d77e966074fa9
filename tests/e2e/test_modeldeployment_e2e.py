"""The ModelDeployment lifecycle on a real API server (kind, EKS), with the operator running in-process.

Covers what tests/integration/test_operator_modeldeployment.py covers, on a real server: create → Deployment,
Service and PDB owned by the resource (real uid) and a truthful status with the real generation as
observedGeneration; update → the pod template rolls and observedGeneration follows; a deleted child is restored;
the resource deleted with the operator stopped → its children go by owner-reference garbage collection; a spec
sizing cannot satisfy → Sized=False with a Warning Event and the children untouched; a settled resync writes nothing
(resourceVersions unchanged); LoRA adapters and an EAGLE head reach the pod (flags, download init containers) and
the status (adapters, their memory, the assumed acceptance rate). Plus what only a real server does: CRD schema and CEL rules reject bad objects
(minReplicas > maxReplicas, a tensor-parallel degree the instance cannot run, a negative replica count, an unknown
engine); status is a subresource (a status write does not bump generation, a main-resource write cannot set status);
the scale subresource (`kubectl scale`) drives replicas when autoscaling is off; the chart's namespaced RBAC is
enough for the operator to do all of this under its own ServiceAccount.
Against the suite's own control plane, kwok runs the pods on fake Neuron nodes, so Ready follows them; against
an external cluster that test is skipped (it may have no Neuron nodes) and nothing else depends on a kubelet.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import kubernetes
import pytest

from tests.e2e.cluster import Apis, eventually, running_operator
from tests.support.factories import make_model_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GROUP, VERSION, PLURAL = "neuroscale.io", "v1alpha1", "modeldeployments"


class Cluster(Apis):
    """The test namespace's API views, with shortcuts for one ModelDeployment."""

    def create(self, name: str = "llama", **spec: Any) -> dict[str, Any]:
        body = make_model_deployment(name, self.namespace, **spec)
        # A real server assigns uid, generation and resourceVersion; it refuses a resourceVersion on create.
        body["metadata"] = {"name": name, "namespace": self.namespace}
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, body)

    def md(self, name: str = "llama") -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def patch(self, patch: dict[str, Any], name: str = "llama") -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name, patch)

    def deployment(self, name: str = "llama") -> Any:
        return self.apps.read_namespaced_deployment(name, self.namespace)

    def children(self, name: str = "llama") -> dict[str, Any]:
        """Each child kind → the live object, or None when absent."""
        readers = {"Deployment": self.apps.read_namespaced_deployment, "Service": self.core.read_namespaced_service,
                   "PodDisruptionBudget": self.policy.read_namespaced_pod_disruption_budget}
        found = {}
        for kind, read in readers.items():
            try:
                found[kind] = read(name, self.namespace)
            except kubernetes.client.ApiException as exc:
                if exc.status != 404:
                    raise
                found[kind] = None
        return found

    def events(self, name: str = "llama") -> list[Any]:
        return self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}").items


def condition(md: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (md.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


def args(cluster: Cluster, name: str = "llama") -> list[str]:
    return cluster.deployment(name).spec.template.spec.containers[0].args


@pytest.fixture
def cluster(api: Any, namespace: str) -> Cluster:
    return Cluster(api, namespace)


async def settled(cluster: Cluster, name: str = "llama") -> dict[str, Any]:
    """The resource once it has its children and a Sized condition for its current generation."""
    def ready() -> dict[str, Any] | None:
        md = cluster.md(name)
        sized = condition(md, "Sized")
        children = cluster.children(name)
        fresh = md.get("status", {}).get("observedGeneration") == md["metadata"]["generation"]
        return md if sized and fresh and all(children.values()) else None
    return await eventually(ready, timeout=120)


async def test_create_renders_owned_children_and_status(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        created = await asyncio.to_thread(cluster.create)
        md = await settled(cluster)
        children = await asyncio.to_thread(cluster.children)

    for kind, child in children.items():
        (owner,) = child.metadata.owner_references
        assert owner.uid == created["metadata"]["uid"] and owner.controller, kind
        assert child.metadata.labels["neuroscale.io/model-deployment"] == "llama"
    assert condition(md, "Sized")["status"] == "True"
    assert md["status"]["sizing"]["instanceType"].startswith("inf2.")
    assert md["status"]["endpoint"].startswith(f"http://llama.{cluster.namespace}.svc")
    assert md["status"]["observedGeneration"] == md["metadata"]["generation"] == 1
    limits = children["Deployment"].spec.template.spec.containers[0].resources.limits
    assert int(limits["aws.amazon.com/neuron"]) == md["status"]["sizing"]["neuronDevices"]


async def test_adapters_and_speculation_reach_the_pod_and_the_status(cluster: Cluster) -> None:
    adapters = [{"name": "sql", "source": "hf://org/sql-lora", "rank": 16},
                {"name": "support", "source": "s3://loras/support", "rank": 8}]
    speculation = {"method": "eagle3", "draftModel": {"source": "s3://heads/llama-3.1-8b-eagle3"}}
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create, adapters=adapters, speculativeDecoding=speculation)
        md = await settled(cluster)
    status = md["status"]
    assert status["adapters"] == adapters
    assert status["sizing"]["adaptersGiB"] > 0 and status["sizing"]["speculatorGiB"] > 0
    assert "acceptance rate assumed 0.7" in status["sizing"]["explanation"]
    argv = args(cluster)
    assert argv[argv.index("--lora-modules") + 1:][:2] == ["sql=/models/adapters/sql", "support=/models/adapters/support"]
    assert json.loads(argv[argv.index("--speculative-config") + 1])["model"] == "/models/speculator"
    inits = [c.name for c in cluster.deployment().spec.template.spec.init_containers]
    assert inits == ["download-model", "download-speculator", "download-adapter-0", "download-adapter-1"]


async def test_ready_follows_the_pods(control_plane: Any, cluster: Cluster) -> None:
    if control_plane is None:
        pytest.skip("needs Neuron nodes that run pods: the suite's kwok nodes (an external cluster may have none)")
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create)
        md = await eventually(lambda: (m := cluster.md()) and condition(m, "Ready")["status"] == "True" and m)
        assert md["status"]["readyReplicas"] == 1 and condition(md, "Ready")["reason"] == "Available"
        await asyncio.to_thread(cluster.patch, {"spec": {"replicas": 0}})
        md = await eventually(lambda: (m := cluster.md()) and condition(m, "Ready")["reason"] == "ScaledToZero" and m)
    assert condition(md, "Ready")["status"] == "False" and md["status"]["replicas"] == 0


async def test_update_rolls_the_pod_template(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create)
        await settled(cluster)
        assert "--enable-prefix-caching" not in await asyncio.to_thread(args, cluster)
        patched = await asyncio.to_thread(cluster.patch, {"spec": {"engine": {"prefixCaching": True},
                                                                   "batching": {"maxNumSeqs": 16}}})
        assert patched["metadata"]["generation"] == 2
        md = await settled(cluster)
        rolled = await asyncio.to_thread(args, cluster)
    assert rolled[rolled.index("--max-num-seqs") + 1] == "16"
    assert md["status"]["observedGeneration"] == 2


async def test_deleted_child_is_restored(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create)
        await settled(cluster)
        before = (await asyncio.to_thread(cluster.children))["Service"].metadata.uid
        await asyncio.to_thread(cluster.core.delete_namespaced_service, "llama", cluster.namespace)
        service = await eventually(lambda: (s := cluster.children()["Service"]) and s.metadata.uid != before and s)
        assert service.metadata.owner_references[0].name == "llama"
        await eventually(lambda: any(e.reason == "Restored" for e in cluster.events()))


async def test_children_are_garbage_collected_by_owner_references(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create)
        await settled(cluster)
    # The operator is stopped: only the API server's garbage collector can remove the children now.
    await asyncio.to_thread(cluster.custom.delete_namespaced_custom_object, GROUP, VERSION, cluster.namespace,
                            PLURAL, "llama", propagation_policy="Background")
    await eventually(lambda: not any(cluster.children().values()), timeout=120)


async def test_unsatisfiable_spec_sets_condition_and_keeps_children(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create)
        await settled(cluster)
        before = (await asyncio.to_thread(cluster.deployment)).spec.template.to_dict()
        await asyncio.to_thread(cluster.patch, {"spec": {
            "model": {"source": "hf://meta-llama/Llama-3.3-70B-Instruct"}, "accelerator": {"instanceType": "inf2.xlarge"}}})
        md = await eventually(lambda: (m := cluster.md()) and condition(m, "Sized")["status"] == "False" and m)
        await eventually(lambda: any(e.reason == "SizingFailed" and e.type == "Warning" for e in cluster.events()))
        after = (await asyncio.to_thread(cluster.deployment)).spec.template.to_dict()
    sized = condition(md, "Sized")
    assert sized["reason"] == "SizingFailed" and "inf2.xlarge" in sized["message"]
    assert after == before


async def test_settled_resync_writes_nothing(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace, resync_seconds=2.0) as runtime:
        await asyncio.to_thread(cluster.create)
        await settled(cluster)
        await asyncio.sleep(5)  # let the Deployment controller's first status updates come and be reported

        def versions() -> dict[str, str]:
            children = cluster.children()
            return {"ModelDeployment": cluster.md()["metadata"]["resourceVersion"],
                    **{kind: child.metadata.resource_version for kind, child in children.items()}}
        writes, before = runtime.kube.writes.total, await asyncio.to_thread(versions)
        await asyncio.sleep(7)  # at least three resyncs
        after = await asyncio.to_thread(versions)
        assert runtime.kube.writes.total == writes, runtime.kube.writes.counts
    # Deployment status may move on its own (controller-manager); ours and the others' must not.
    assert {k: v for k, v in after.items() if k != "Deployment"} == {k: v for k, v in before.items() if k != "Deployment"}


@pytest.mark.parametrize(("spec", "message"), [
    ({"replicas": 1, "autoscaling": {"minReplicas": 4, "maxReplicas": 2, "targetTokensPerSecond": 100}},
     "minReplicas must not exceed maxReplicas"),
    ({"accelerator": {"instanceType": "inf2.xlarge", "tensorParallelDegree": 8}},
     "tensorParallelDegree is not supported on this instance type"),
    ({"replicas": -1}, "spec.replicas"),
    ({"engine": {"name": "not-an-engine"}}, "spec.engine.name"),
])
def test_api_server_rejects_invalid_objects(cluster: Cluster, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(kubernetes.client.ApiException) as rejected:
        cluster.create("invalid", **spec)
    assert rejected.value.status == 422
    assert message in rejected.value.body


async def test_status_is_a_subresource(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create)
        md = await settled(cluster)
    # The operator wrote status (more than once): generation counts spec changes only.
    assert md["metadata"]["generation"] == 1
    # A write to the main resource cannot change status.
    patched = await asyncio.to_thread(cluster.patch, {"status": {"endpoint": "http://forged.example"}})
    assert patched["status"]["endpoint"] == md["status"]["endpoint"]


async def test_scale_subresource_drives_replicas_without_autoscaling(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create)
        md = await settled(cluster)
        scale = await asyncio.to_thread(cluster.custom.get_namespaced_custom_object_scale, GROUP, VERSION,
                                        cluster.namespace, PLURAL, "llama")
        assert scale["spec"]["replicas"] == 1
        assert scale["status"]["selector"] == md["status"]["selector"]
        await asyncio.to_thread(cluster.custom.patch_namespaced_custom_object_scale, GROUP, VERSION,
                                cluster.namespace, PLURAL, "llama", {"spec": {"replicas": 3}})
        await eventually(lambda: cluster.deployment().spec.replicas == 3)
        md = await eventually(lambda: (m := cluster.md()) and m["status"].get("desiredReplicas") == 3 and m)
    assert md["spec"]["replicas"] == 3


async def test_operator_works_under_the_charts_namespaced_rbac(api: Any, cluster: Cluster) -> None:
    import kopf

    from tests.support.rbac import rendered_rules

    rbac = kubernetes.client.RbacAuthorizationV1Api(api)
    ns = cluster.namespace
    cluster.core.create_namespaced_service_account(ns, {"metadata": {"name": "neuroscale"}})
    rbac.create_namespaced_role(ns, {"metadata": {"name": "neuroscale"}, "rules": rendered_rules({"watchNamespaces": [ns]})})
    rbac.create_namespaced_role_binding(ns, {
        "metadata": {"name": "neuroscale"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "neuroscale"},
        "subjects": [{"kind": "ServiceAccount", "name": "neuroscale", "namespace": ns}],
    })
    token = cluster.core.create_namespaced_service_account_token(
        "neuroscale", ns, {"spec": {"expirationSeconds": 3600}}).status.token
    admin = api.configuration
    configuration = kubernetes.client.Configuration()
    configuration.host, configuration.ssl_ca_cert, configuration.verify_ssl = (
        admin.host, admin.ssl_ca_cert, admin.verify_ssl)
    configuration.api_key = {"authorization": f"Bearer {token}"}
    as_operator = kubernetes.client.ApiClient(configuration)

    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=admin.host, ca_path=admin.ssl_ca_cert, insecure=not admin.verify_ssl,
                                   token=token)

    # Only the rendered rules grant anything: the operator's own client must be refused outside them.
    with pytest.raises(kubernetes.client.ApiException) as refused:
        kubernetes.client.CoreV1Api(as_operator).list_namespaced_secret("kube-system")
    assert refused.value.status == 403

    async with running_operator(ns, api=as_operator, login=login) as runtime:
        await asyncio.to_thread(cluster.create)
        md = await settled(cluster)
        assert runtime.kube.writes.total > 0
    assert condition(md, "Sized")["status"] == "True"
