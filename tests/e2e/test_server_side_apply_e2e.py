"""Server-side apply of children and optimistic concurrency of status, on the real API server.

Covers: removing an optional spec field removes it from the children (node selector entry, toleration, env var,
compile-cache init container, autoscaling on → off hands replicas back to spec.replicas), because the operator's
field manager owns exactly what it renders; a user's annotation on a child survives reconciles and spec changes; a
hand edit of a field the operator owns is put back; the ServiceAccount the operator made goes when the spec names
an existing one; a settled resync sends no write, counted by the API server itself (`apiserver_request_total`);
the reconciler and the autoscaler writing status at the same time never lose each other's conditions.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import kubernetes
import pytest

from neuroscale.controllers import autoscaling, modeldeployment
from neuroscale.k8s.client import KubeClient
from neuroscale.k8s.ssa import FIELD_MANAGER
from tests.e2e.cluster import eventually, running_operator
from tests.e2e.test_modeldeployment_e2e import GROUP, PLURAL, VERSION, Cluster, condition, settled

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

WRITE_VERBS = {"POST", "PUT", "PATCH", "APPLY", "DELETE", "DELETECOLLECTION"}
# Writes the operator could make; the built-ins' status subresources are the controllers' and kwok's to write.
OPERATOR_RESOURCES = {"modeldeployments", "inferencecascades", "cachetiers", "deployments", "services",
                      "poddisruptionbudgets", "serviceaccounts", "configmaps", "networkpolicies", "events"}


@pytest.fixture
def cluster(api: Any, namespace: str) -> Cluster:
    return Cluster(api, namespace)


def pod_spec(cluster: Cluster, name: str = "llama") -> Any:
    return cluster.deployment(name).spec.template.spec


async def converge(cluster: Cluster, check: Any, timeout: float = 60) -> Any:
    return await eventually(lambda: check(pod_spec(cluster)), timeout=timeout)


@pytest.mark.parametrize(("field", "spec", "removal", "present"), [
    ("node selector entry", {"scheduling": {"nodeSelector": {"team": "search"}}},
     {"scheduling": {"nodeSelector": {"team": None}}},
     lambda pod: "team" in (pod.node_selector or {})),
    ("toleration", {"scheduling": {"tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}]}},
     {"scheduling": {"tolerations": None}},
     lambda pod: any(t.key == "dedicated" for t in pod.tolerations or ())),
    ("env var", {"engine": {"name": "vllm", "env": [{"name": "NEURON_RT_LOG_LEVEL", "value": "INFO"}]}},
     {"engine": {"env": None}},
     lambda pod: any(e.name == "NEURON_RT_LOG_LEVEL" for e in pod.containers[0].env or ())),
    ("compile-cache init container", {"compileCache": {"uri": "s3://artifacts/llama"}},
     {"compileCache": None},
     lambda pod: any(c.name == "restore-compile-cache" for c in pod.init_containers or ())),
], ids=lambda v: v if isinstance(v, str) else None)
async def test_removing_an_optional_field_removes_it_from_the_children(
    cluster: Cluster, field: str, spec: dict[str, Any], removal: dict[str, Any], present: Any,
) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create, **spec)
        await settled(cluster)
        assert present(await asyncio.to_thread(pod_spec, cluster)), f"{field} was never rendered"
        await asyncio.to_thread(cluster.patch, {"spec": removal})
        await converge(cluster, lambda pod: not present(pod))
        md = await settled(cluster)
    assert md["status"]["observedGeneration"] == md["metadata"]["generation"] == 2


async def test_autoscaling_off_hands_replicas_back_to_the_spec(cluster: Cluster) -> None:
    scaling = {"minReplicas": 2, "maxReplicas": 4, "targetTokensPerSecond": 100}
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create, replicas=1, autoscaling=scaling)
        await eventually(lambda: cluster.deployment().spec.replicas == 2)  # the autoscaler's floor
        await asyncio.to_thread(cluster.patch, {"spec": {"autoscaling": None, "replicas": 3}})
        await eventually(lambda: cluster.deployment().spec.replicas == 3)
        await asyncio.sleep(3)  # a few autoscaler intervals: nothing may scale it back
        assert (await asyncio.to_thread(cluster.deployment)).spec.replicas == 3
        md = await settled(cluster)
    assert condition(md, "Autoscaling") is None or condition(md, "Autoscaling")["status"] != "True"


async def test_a_users_annotation_survives_and_a_hand_edit_of_ours_is_put_back(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace, resync_seconds=2.0):
        await asyncio.to_thread(cluster.create)
        await settled(cluster)
        deployment = await asyncio.to_thread(cluster.deployment)
        image = deployment.spec.template.spec.containers[0].image
        # Two other writers: someone annotating (kept) and someone changing our image (reverted).
        await asyncio.to_thread(cluster.apps.patch_namespaced_deployment, "llama", cluster.namespace,
                                {"metadata": {"annotations": {"team.example/owner": "search"}}},
                                field_manager="kubectl-annotate")
        await asyncio.to_thread(cluster.apps.patch_namespaced_deployment, "llama", cluster.namespace,
                                {"spec": {"template": {"spec": {"containers": [{"name": "engine",
                                                                               "image": "example/hacked:1"}]}}}},
                                field_manager="kubectl-edit")
        await eventually(lambda: cluster.deployment().spec.template.spec.containers[0].image == image)
        await asyncio.to_thread(cluster.patch, {"spec": {"batching": {"maxNumSeqs": 16}}})
        await settled(cluster)
        annotations = (await asyncio.to_thread(cluster.deployment)).metadata.annotations
    assert annotations["team.example/owner"] == "search"


async def test_operator_made_service_account_goes_when_the_spec_names_an_existing_one(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create, serviceAccount={
            "roleArn": "arn:aws:iam::123456789012:role/llama"})
        await settled(cluster)
        made = await asyncio.to_thread(cluster.core.read_namespaced_service_account, "llama", cluster.namespace)
        assert made.metadata.owner_references[0].name == "llama"
        assert made.metadata.annotations["eks.amazonaws.com/role-arn"].endswith(":role/llama")
        await asyncio.to_thread(cluster.core.create_namespaced_service_account, cluster.namespace,
                                {"metadata": {"name": "shared"}})
        await asyncio.to_thread(cluster.patch, {"spec": {"serviceAccount": {"name": "shared", "roleArn": None}}})
        await converge(cluster, lambda pod: pod.service_account_name == "shared")

        def gone() -> bool:
            try:
                cluster.core.read_namespaced_service_account("llama", cluster.namespace)
            except kubernetes.client.ApiException as exc:
                return exc.status == 404
            return False
        await eventually(gone)


def write_requests(api: Any) -> Counter:
    """The API server's own count of write requests to the kinds the operator writes."""
    text = api.call_api("GET", f"{api.configuration.host}/metrics", {"Accept": "text/plain"}).read().decode()
    counts: Counter = Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
        builtin_status = labels.get("group", "") in ("", "apps", "policy") and labels.get("subresource") == "status"
        if labels.get("verb") in WRITE_VERBS and labels.get("resource") in OPERATOR_RESOURCES and not builtin_status:
            key = (labels["verb"], labels["resource"], labels.get("subresource", ""))
            counts[key] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def quiet(cluster: Cluster) -> bool:
    """No other namespace is being deleted: the count has no namespace label, and earlier tests' namespaces are
    deleted in the background (the namespace controller's DELETEs would be counted)."""
    return not [ns for ns in cluster.core.list_namespace().items if ns.metadata.deletion_timestamp]


async def test_settled_resync_sends_no_write_by_the_api_servers_count(api: Any, cluster: Cluster) -> None:
    await eventually(lambda: quiet(cluster), timeout=120)
    async with running_operator(cluster.namespace, resync_seconds=1.0) as runtime:
        await asyncio.to_thread(cluster.create)
        await settled(cluster)
        await eventually(lambda: condition(cluster.md(), "Ready")["status"] == "True", timeout=60)
        await asyncio.sleep(3)  # the last Deployment status updates arrive and are reported
        before = await asyncio.to_thread(write_requests, api)
        assert before[("APPLY", "deployments", "")] >= 1, before  # the count sees the operator's applies
        operator_before = runtime.kube.writes.total
        await asyncio.sleep(6)  # at least five resyncs
        after = await asyncio.to_thread(write_requests, api)
    assert runtime.kube.writes.total == operator_before, runtime.kube.writes.counts
    assert after - before == Counter(), f"writes during a settled resync: {dict(after - before)}"


def test_reconciler_and_autoscaler_writing_status_at_once_keep_each_others_conditions(
    api: Any, cluster: Cluster, caplog: pytest.LogCaptureFixture,
) -> None:
    """No operator and no locks: the two writers race on the status subresource directly."""
    cluster.create(autoscaling={"minReplicas": 1, "maxReplicas": 3, "targetTokensPerSecond": 100})
    kube = KubeClient(api)
    clock = lambda: datetime.now(timezone.utc)  # noqa: E731
    memory = autoscaling.Memory()
    errors: list[BaseException] = []

    def reconciler() -> None:
        for _ in range(25):
            modeldeployment.reconcile(cluster.md(), kube, now=clock(), emit=lambda *_: None)

    def autoscaler() -> None:
        for _ in range(25):
            autoscaling.step(cluster.md(), kube, None, memory, now=clock().timestamp(), clock=clock(),
                             interval_s=1.0, emit=lambda *_: None)

    def run(fn: Any) -> None:
        try:
            fn()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    caplog.set_level(logging.INFO, logger="neuroscale.controllers.children")
    threads = [threading.Thread(target=run, args=(fn,)) for fn in (reconciler, autoscaler)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    md = cluster.md()
    types = {c["type"] for c in md["status"]["conditions"]}
    assert {"Sized", "Progressing", "Degraded", "Ready", "Autoscaling"} <= types, types
    assert md["status"]["autoscaling"]["lastDecision"]
    # The race really happened: some writes were refused for a stale resourceVersion and rebuilt.
    assert any("changed meanwhile" in r.getMessage() for r in caplog.records)


async def test_children_carry_exactly_the_operators_field_manager(cluster: Cluster) -> None:
    async with running_operator(cluster.namespace):
        await asyncio.to_thread(cluster.create)
        await settled(cluster)
    for kind, child in (await asyncio.to_thread(cluster.children)).items():
        appliers = {m.manager for m in child.metadata.managed_fields if m.operation == "Apply"}
        assert appliers == {FIELD_MANAGER}, (kind, appliers)
    scale = await asyncio.to_thread(cluster.custom.get_namespaced_custom_object_scale, GROUP, VERSION,
                                    cluster.namespace, PLURAL, "llama")
    assert scale["spec"]["replicas"] == 1
