"""The operator against the kmock Kubernetes emulator: the ModelDeployment lifecycle over real HTTP.

Covers: create → Deployment/Service/PDB with owner references and a truthful status (Sized, sizing, cost,
endpoint); Ready follows the Deployment's status; update → the pod template rolls; a deleted child is restored;
a hand-edited child is put back; the CR deleted → its children go; a spec sizing cannot satisfy → Sized=False with a
Warning Event and the running children untouched; a settled resync writes nothing; status conditions keep their
lastTransitionTime when nothing changes; the ServiceAccount the operator made goes when the spec names an
existing one.
"""

from __future__ import annotations

import asyncio

import pytest

from neuroscale.sizing import CATALOG
from tests.support.factories import make_model_deployment
from tests.support.kube import NAMESPACE, condition, eventually, running_operator, stored

MD = "neuroscale.io/v1alpha1/modeldeployments"
DEPLOY, SVC, PDB, EVENTS = "apps/v1/deployments", "v1/services", "policy/v1/poddisruptionbudgets", "v1/events"
BASE = f"/apis/neuroscale.io/v1alpha1/namespaces/{NAMESPACE}/modeldeployments"


async def create(server, body):
    async with server.post(BASE, json=body) as response:
        assert response.status < 300, await response.text()


def container(server, name="llama"):
    return stored(server, DEPLOY, name)["spec"]["template"]["spec"]["containers"][0]


async def settled(server, name="llama"):
    """Wait until the ModelDeployment has children and a Sized status."""
    def ready():
        md = stored(server, MD, name)
        return md and condition(md, "Sized") and stored(server, DEPLOY, name) and stored(server, SVC, name)
    await eventually(ready)
    return stored(server, MD, name)


def events(server, reason=None):
    return [e.raw for key, e in server.objects.items()
            if key[0].plural == "events" and not e.deleted and (reason is None or e.raw.get("reason") == reason)]


async def test_create_renders_children_with_owner_and_status(cluster):
    server, kubeconfig = cluster
    body = make_model_deployment()
    async with running_operator(kubeconfig):
        await create(server, body)
        md = await settled(server)

        for resource in (DEPLOY, SVC, PDB):
            child = stored(server, resource, "llama")
            assert child is not None, resource
            (owner,) = child["metadata"]["ownerReferences"]
            assert owner["uid"] == body["metadata"]["uid"] and owner["controller"] is True
            assert child["metadata"]["labels"]["neuroscale.io/model-deployment"] == "llama"

        status = md["status"]
        assert condition(md, "Sized")["status"] == "True"
        assert status["sizing"]["instanceType"].startswith("inf2.")
        assert status["sizing"]["tensorParallelDegree"] >= 2
        assert status["endpoint"].startswith("http://llama.ns1.svc")
        assert status["desiredReplicas"] == 1
        assert condition(md, "Ready")["status"] == "False"  # no kubelet: nothing is ready yet
        limits = container(server)["resources"]["limits"]
        assert int(limits["aws.amazon.com/neuron"]) == status["sizing"]["neuronDevices"]


async def test_ready_follows_deployment_status(cluster):
    server, kubeconfig = cluster
    async with running_operator(kubeconfig):
        await create(server, make_model_deployment())
        await settled(server)
        # Play the Deployment controller: one replica became ready.
        url = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/llama/status"
        async with server.patch(url, json={"status": {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1,
                                                     "availableReplicas": 1}}) as response:
            assert response.status < 300
        md = await eventually(lambda: (m := stored(server, MD, "llama")) and
                              condition(m, "Ready")["status"] == "True" and m)
        assert md["status"]["readyReplicas"] == 1
        price = CATALOG[md["status"]["sizing"]["instanceType"]].price_per_hour
        assert md["status"]["costPerHour"] == pytest.approx(price * 1, abs=1e-3)


async def test_update_rolls_the_pod_template(cluster):
    server, kubeconfig = cluster
    async with running_operator(kubeconfig):
        await create(server, make_model_deployment())
        await settled(server)
        assert "--enable-prefix-caching" not in container(server)["args"]
        async with server.patch(f"{BASE}/llama", json={"spec": {"engine": {"prefixCaching": True},
                                                                 "batching": {"maxNumSeqs": 16}}}) as response:
            assert response.status < 300
        await eventually(lambda: "16" in container(server)["args"])
        args = container(server)["args"]
        assert args[args.index("--max-num-seqs") + 1] == "16"


async def test_deleted_and_edited_children_are_restored(cluster):
    server, kubeconfig = cluster
    async with running_operator(kubeconfig):
        await create(server, make_model_deployment())
        await settled(server)
        image = container(server)["image"]

        async with server.delete(f"/api/v1/namespaces/{NAMESPACE}/services/llama"):
            pass
        await eventually(lambda: stored(server, SVC, "llama"))

        edited = stored(server, DEPLOY, "llama")["spec"]["template"]["spec"]
        edited["containers"][0]["image"] = "example.invalid/hacked:latest"
        async with server.patch(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/llama",
                                json={"spec": {"template": {"spec": {"containers": edited["containers"]}}}}):
            pass
        await eventually(lambda: container(server)["image"] == image)
        assert events(server, "Restored"), "a recreated child is announced"


async def test_deleting_the_resource_removes_children(cluster):
    server, kubeconfig = cluster
    async with running_operator(kubeconfig):
        await create(server, make_model_deployment())
        await settled(server)
        async with server.delete(f"{BASE}/llama") as response:
            assert response.status < 300
        await eventually(lambda: all(stored(server, r, "llama") is None for r in (DEPLOY, SVC, PDB)))


async def test_unsatisfiable_spec_sets_condition_and_keeps_running_children(cluster):
    server, kubeconfig = cluster
    async with running_operator(kubeconfig):
        await create(server, make_model_deployment())
        await settled(server)
        before = stored(server, DEPLOY, "llama")["spec"]["template"]
        # A 70B model pinned to an instance far too small for it: the schema cannot know, sizing does.
        async with server.patch(f"{BASE}/llama", json={"spec": {
                "model": {"source": "hf://meta-llama/Llama-3.3-70B-Instruct"},
                "accelerator": {"instanceType": "inf2.xlarge"}}}):
            pass
        md = await eventually(lambda: (m := stored(server, MD, "llama")) and
                              condition(m, "Sized")["status"] == "False" and m)
        sized = condition(md, "Sized")
        assert sized["reason"] == "SizingFailed"
        assert "inf2.xlarge" in sized["message"] and "GiB" in sized["message"]
        assert condition(md, "Ready")["status"] == "False"
        await eventually(lambda: any(e["type"] == "Warning" for e in events(server, "SizingFailed")))
        assert stored(server, DEPLOY, "llama")["spec"]["template"] == before


async def test_settled_resync_writes_nothing(cluster):
    server, kubeconfig = cluster
    async with running_operator(kubeconfig) as runtime:
        await create(server, make_model_deployment())
        md = await settled(server)
        await asyncio.sleep(3)  # the first resyncs (every 2 s here) settle anything the creation raced with
        writes_before = runtime.kube.writes.total
        transition = condition(stored(server, MD, "llama"), "Sized")["lastTransitionTime"]
        await asyncio.sleep(5)  # at least two more resyncs
        assert runtime.kube.writes.total == writes_before, runtime.kube.writes.counts
        assert condition(stored(server, MD, "llama"), "Sized")["lastTransitionTime"] == transition
        assert md["status"]["sizing"] == stored(server, MD, "llama")["status"]["sizing"]


async def test_operator_made_service_account_goes_when_the_spec_names_an_existing_one(cluster):
    server, kubeconfig = cluster
    role = "arn:aws:iam::111122223333:role/model-weights"
    async with running_operator(kubeconfig):
        await create(server, make_model_deployment(serviceAccount={"roleArn": role}))
        account = await eventually(lambda: stored(server, "v1/serviceaccounts", "llama"))
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == role
        async with server.patch(f"{BASE}/llama", json={"spec": {"serviceAccount": {"roleArn": None,
                                                                                   "name": "shared-reader"}}}):
            pass
        await eventually(lambda: stored(server, "v1/serviceaccounts", "llama") is None)
        assert stored(server, DEPLOY, "llama")["spec"]["template"]["spec"]["serviceAccountName"] == "shared-reader"
