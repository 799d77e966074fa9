"""neuroscale as users drive it: the real kubectl binary against the real control plane, with the operator running.

Covers: `kubectl explain` shows the CRDs' descriptions, types, enums and required markers; `kubectl get md,ic,ct`
shows the CRDs' printer columns (and `-o wide` the priority-1 ones) filled in once the operator reconciled;
`kubectl scale md/x` goes through the scale subresource and, with autoscaling off, the Deployment follows and the
operator keeps the new count; `kubectl apply --server-side` of every neuroscale example, then
`kubectl wait --for=condition=Ready`: kube-scheduler places the model pods on fake Neuron nodes of their instance
type (kwok keeps them Running and Ready); a model pod lands only on a node of its instance type, tolerating the
Neuron taint; a ModelDeployment asking for more Neuron devices than the cluster's nodes of its type hold stays
Pending with the scheduler's FailedScheduling event.

The local control plane has exactly these nodes (tests/support/controlplane.py NODES): inf2.xlarge x1,
inf2.8xlarge x2, inf2.48xlarge x1, trn1.2xlarge x1, trn1.32xlarge x1, and two m6i.2xlarge CPU nodes for gateways
and Redis. Every test that places model pods removes them before it ends, so the next test finds the nodes free.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.cluster import Apis, eventually, running_operator, wait_for
from tests.support.factories import make_cache_tier, make_inference_cascade, make_model_deployment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
GROUP, VERSION = "neuroscale.io", "v1alpha1"
CRDS = {doc["spec"]["names"]["kind"]: doc
        for path in sorted((ROOT / "crds").glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc}
SHORT = {"md": "ModelDeployment", "ic": "InferenceCascade", "ct": "CacheTier"}
NEURON_TAINT_KEY = "aws.amazon.com/neuron"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
MODEL_LABEL = "neuroscale.io/model-deployment"
SMALL_MODEL = "hf://meta-llama/Llama-3.2-1B-Instruct"  # fits one NeuronCore of any instance


class Kubectl:
    """The kubectl binary with the cluster's kubeconfig and a discovery cache of its own (never ~/.kube/cache)."""

    def __init__(self, binary: Path, kubeconfig: Path | None, cache_dir: Path) -> None:
        self.binary, self.kubeconfig, self.cache_dir = binary, kubeconfig, cache_dir

    def argv(self, *args: str) -> list[str]:
        config = [f"--kubeconfig={self.kubeconfig}"] if self.kubeconfig else []
        return [str(self.binary), *config, f"--cache-dir={self.cache_dir}", *args]

    def run(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done

    async def arun(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """The same from async tests: in a thread, so the in-process operator keeps running."""
        return await asyncio.to_thread(self.run, *args, check=check, timeout=timeout)


@pytest.fixture(scope="module")
def kubectl(control_plane: Any, crds: list[dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Kubectl:
    cache = tmp_path_factory.mktemp("kubectl-cache")
    if control_plane is None:  # NEUROSCALE_E2E=1: the cluster of KUBECONFIG, with the user's own kubectl
        binary = shutil.which("kubectl")
        if binary is None:
            pytest.skip("NEUROSCALE_E2E=1 and no kubectl on PATH")
        config = os.environ.get("KUBECONFIG")
        tool = Kubectl(Path(binary), Path(config) if config else None, cache)
    else:
        tool = Kubectl(control_plane.bin_dir / "kubectl", control_plane.kubeconfig, cache)
    # Established is not the end of a CRD install: the API server publishes the schema in its OpenAPI document a
    # moment later, and until then `kubectl explain` answers "couldn't find resource". Users wait the same way.
    wait_for(lambda: all(tool.run("explain", short, check=False).returncode == 0 for short in SHORT), timeout=60,
             what="our kinds published in the OpenAPI document")
    return tool


class Cluster(Apis):
    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        body = {**obj, "metadata": {"name": obj["metadata"]["name"], "namespace": self.namespace}}
        plural = CRDS[obj["kind"]]["spec"]["names"]["plural"]
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body)

    def get(self, kind: str, name: str) -> dict[str, Any]:
        plural = CRDS[kind]["spec"]["names"]["plural"]
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, name)

    def pods(self, model: str | None = None) -> list[Any]:
        selector = f"{MODEL_LABEL}={model}" if model else None
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items

    def node(self, name: str) -> Any:
        return self.core.read_node(name)

    def deployment_replicas(self, name: str) -> int:
        return self.apps.read_namespaced_deployment(name, self.namespace).spec.replicas

    def events(self, name: str) -> list[Any]:
        return self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}").items


@pytest.fixture
def neuron_nodes(control_plane: Any) -> None:
    """Tests that need pods scheduled and Ready need the local control plane's fake Neuron nodes (and kwok)."""
    if control_plane is None:
        pytest.skip("needs the local control plane's fake inf2/trn1 nodes (NEUROSCALE_E2E=1 targets another cluster)")


@pytest.fixture
def cluster(api: Any, namespace: str) -> Any:
    """The test's namespace; on the way out its workloads are deleted and their pods waited for, so the next test
    finds the Neuron nodes free (namespace deletion alone does not wait)."""
    view = Cluster(api, namespace)
    yield view
    for deployment in view.apps.list_namespaced_deployment(namespace).items:
        view.apps.delete_namespaced_deployment(deployment.metadata.name, namespace, propagation_policy="Background")
    deadline = time.monotonic() + 60
    while view.pods() and time.monotonic() < deadline:
        time.sleep(0.5)


async def stays(check: Callable[[], bool], seconds: float, what: str) -> None:
    """`check` holds at every poll for `seconds` (the only way to see that something does not happen)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert await asyncio.to_thread(check), what
        await asyncio.sleep(0.5)


# --- the binary itself ---------------------------------------------------------------------------------------------

def test_kubectl_and_the_api_server_report_the_pinned_release(kubectl: Kubectl, control_plane: Any) -> None:
    """`kubectl version` is the first thing a user runs; the local control plane is built from Kubernetes v1.35.4."""
    if control_plane is None:
        pytest.skip("an external cluster runs whatever release it runs")
    done = kubectl.run("version", "-o", "json", check=False)
    assert done.returncode == 0, done.stderr
    versions = json.loads(done.stdout)
    assert versions["clientVersion"]["gitVersion"] == "v1.35.4"
    assert versions["serverVersion"]["gitVersion"] == "v1.35.4"


# --- kubectl explain ----------------------------------------------------------------------------------------------

def explain_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "Object")
    if kind == "array":
        return "[]" + explain_type(schema["items"])
    if kind == "object":
        extra = schema.get("additionalProperties")
        return f"map[string]{explain_type(extra)}" if isinstance(extra, dict) else "Object"
    return kind


def words(text: str) -> str:
    return " ".join(text.split())


def schema_at(kind: str, path: list[str]) -> dict[str, Any]:
    node = CRDS[kind]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for step in path:
        node = node["properties"][step]
    return node


@pytest.mark.parametrize("target", [
    "md", "md.spec.autoscaling", "md.spec.model", "md.spec.accelerator",
    "ic", "ic.spec.tiers", "ic.spec.escalation",
    "ct", "ct.spec.backend", "ct.spec.semantic.embedding",
])
def test_explain_shows_the_crd_descriptions(kubectl: Kubectl, target: str) -> None:
    short, *path = target.split(".")
    kind = SHORT[short]
    node = schema_at(kind, path)
    out = kubectl.run("explain", target).stdout
    assert f"KIND: {kind}" in words(out) and f"GROUP: {GROUP}" in words(out), out
    description = node["description"]
    if node.get("type") == "array":  # kubectl shows the list's description, then its items'
        description += " " + node["items"].get("description", "")
        node = node["items"]
    assert words(f"DESCRIPTION: {description}") in words(out), out
    if path:
        assert f"FIELD: {path[-1]} <{explain_type(schema_at(kind, path))}>" in words(out), out
    required = set(node.get("required", ()))
    for name, child in node["properties"].items():
        if not path and name in ("apiVersion", "kind", "metadata"):
            continue  # the server replaces these with TypeMeta and ObjectMeta
        entry = f"{name} <{explain_type(child)}>" + (" -required-" if name in required else "")
        if "enum" in child:  # kubectl lists the first four values, then "...."
            entry += " enum: " + ", ".join(child["enum"][:4]) + (", ...." if len(child["enum"]) > 4 else "")
        assert words(f"{entry} {child['description']}") in words(out), f"{target}: {entry}\n{out}"


# --- kubectl get: printer columns ---------------------------------------------------------------------------------

def tables(out: str) -> list[list[dict[str, str]]]:
    """kubectl's tables (one per kind, blank-line separated) as rows of header -> cell, cut at the header columns."""
    found = []
    for block in re.split(r"\n\s*\n", out.strip()):
        header, *lines = block.splitlines()
        starts = [m.start() for m in re.finditer(r"\S+", header)]
        names = header.split()
        rows = []
        for line in lines:
            cells = [line[a:b].strip() for a, b in zip(starts, [*starts[1:], None], strict=True)]
            rows.append(dict(zip(names, cells, strict=True)))
        found.append(rows)
    return found


def resource(kind: str) -> str:
    """How kubectl names a kind when it lists several: `modeldeployment.neuroscale.io`."""
    return f"{CRDS[kind]['spec']['names']['singular']}.{GROUP}"


def by_kind(out: str) -> dict[str, dict[str, str]]:
    """The one row of each kind in `kubectl get md,ic,ct` output (rows named `<resource>/<name>`)."""
    found = {}
    for table in tables(out):
        (row,) = table
        prefix = row["NAME"].split("/")[0]
        found[next(kind for kind in CRDS if resource(kind) == prefix)] = row
    return found


def columns(kind: str, *, wide: bool) -> list[dict[str, Any]]:
    return [c for c in CRDS[kind]["spec"]["versions"][0]["additionalPrinterColumns"]
            if wide or not c.get("priority", 0)]


def jsonpath(obj: dict[str, Any], path: str) -> Any:
    """The value one of our printer columns' JSONPaths selects (dotted fields and one `[?(@.type=="X")]`)."""
    value: Any = obj
    for field, match in re.findall(r"\.([A-Za-z$]+)(?:\[\?\(@\.type==\"(\w+)\"\)\])?", path):
        value = (value or {}).get(field)
        if match:
            value = next((item for item in value or () if item.get("type") == match), None)
    return value


def shown(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # the server prints a whole number without ".0", as Go does
    return str(value)


async def test_get_shows_the_printer_columns_after_reconcile(kubectl: Kubectl, cluster: Cluster,
                                                             neuron_nodes: None) -> None:
    ns = cluster.namespace
    objects = {
        "ModelDeployment": make_model_deployment("llama", ns),
        "CacheTier": make_cache_tier("answers", ns),
        "InferenceCascade": make_inference_cascade("chat", ns, cacheTierRef={"name": "answers"}),
    }
    async with running_operator(ns, resync_seconds=2.0):
        for obj in objects.values():
            await asyncio.to_thread(cluster.create, obj)
        for short, name in (("md", "llama"), ("ct", "answers"), ("ic", "chat")):
            await kubectl.arun("wait", "-n", ns, "--for=condition=Ready", f"{short}/{name}", "--timeout=120s",
                               timeout=150)
        # Ready needs one gateway replica; wait for both, so the READY column cannot move under the comparison.
        await kubectl.arun("wait", "-n", ns, "--for=jsonpath={.status.readyReplicas}=2", "ic/chat", "--timeout=60s",
                           timeout=90)
        # A gateway may still roll once its config learns the model's price (status.costPerMillionTokens), which
        # moves READY for a moment: compare a table with the objects read right after it, once both agree.
        for _ in range(20):
            before = {kind: await asyncio.to_thread(cluster.get, kind, obj["metadata"]["name"])
                      for kind, obj in objects.items()}
            plain = (await kubectl.arun("get", "md,ic,ct", "-n", ns)).stdout
            wide = (await kubectl.arun("get", "md,ic,ct", "-n", ns, "-o", "wide")).stdout
            live = {kind: await asyncio.to_thread(cluster.get, kind, obj["metadata"]["name"])
                    for kind, obj in objects.items()}
            if all(before[k]["metadata"]["resourceVersion"] == live[k]["metadata"]["resourceVersion"] for k in live):
                break
            await asyncio.sleep(1)

    for out, is_wide in ((plain, False), (wide, True)):
        rows = by_kind(out)
        assert set(rows) == set(objects), out
        for kind, row in rows.items():
            assert list(row) == ["NAME", *(c["name"].upper() for c in columns(kind, wide=is_wide))], out
            for column in columns(kind, wide=is_wide):
                cell = row[column["name"].upper()]
                if column["type"] == "date":
                    assert re.fullmatch(r"\d+[smhd](\d+[sm])?", cell), (kind, column, cell)
                else:
                    assert cell == shown(jsonpath(live[kind], column["jsonPath"])), (
                        kind, column["name"], out)

    rows = by_kind(plain)
    md, ic, ct = rows["ModelDeployment"], rows["InferenceCascade"], rows["CacheTier"]
    # After reconcile the status columns carry values, not blanks: what the operator and kwok made true.
    assert (md["INSTANCE"], md["TP"], md["READY"], md["DESIRED"], md["STATUS"]) == (
        "inf2.8xlarge", "2", "1", "1", "Available"), plain
    assert ic["MODEL"] == "chat" and ic["ENDPOINT"].startswith("http://chat-gateway.") and ic["STATUS"] == "Available"
    assert ct["MODE"] == "exact" and ct["BACKEND"] == "inCluster" and ct["ENDPOINT"].startswith("redis://")
    assert ct["STATUS"] == "Available", plain


# --- kubectl scale ------------------------------------------------------------------------------------------------

async def test_scale_goes_through_the_scale_subresource_and_sticks(kubectl: Kubectl, cluster: Cluster) -> None:
    ns = cluster.namespace
    md = make_model_deployment("llama", ns, autoscaling={"enabled": False})
    async with running_operator(ns, resync_seconds=2.0):
        await asyncio.to_thread(cluster.create, md)
        # Sized, not Ready: nothing here needs a pod to run, so any cluster will do.
        await kubectl.arun("wait", "-n", ns, "--for=condition=Sized", "md/llama", "--timeout=120s", timeout=150)
        assert await eventually(lambda: cluster.deployment_replicas("llama") == 1, timeout=60)

        scaled = await kubectl.arun("scale", "-n", ns, "md/llama", "--replicas", "3")
        assert scaled.stdout.strip() == "modeldeployment.neuroscale.io/llama scaled"
        md = await asyncio.to_thread(cluster.get, "ModelDeployment", "llama")
        assert md["spec"]["replicas"] == 3 and md["metadata"]["generation"] == 2
        await eventually(lambda: cluster.deployment_replicas("llama") == 3, timeout=60)
        await eventually(lambda: (m := cluster.get("ModelDeployment", "llama"))["status"].get("observedGeneration")
                         == 2 and m["status"]["desiredReplicas"] == 3, timeout=60)

        def still_three() -> bool:
            spec = cluster.get("ModelDeployment", "llama")["spec"]["replicas"]
            return spec == 3 and cluster.deployment_replicas("llama") == 3
        # Three resyncs later nothing has put the old count back, on the resource or on the Deployment.
        await stays(still_three, 6.0, "the scaled replica count was reverted")
        current = (await kubectl.arun("get", "-n", ns, "md/llama", "-o", "jsonpath={.spec.replicas}")).stdout
    assert current == "3"


# --- kubectl apply of the examples, then kubectl wait ---------------------------------------------------------------

def example_files() -> dict[str, list[dict[str, Any]]]:
    """Each examples/*.yaml holding neuroscale objects, with its documents.

    examples/ also holds Karpenter (EC2NodeClass, NodePool) and Argo CD (Application) objects, whose CRDs this
    control plane does not have; only files whose every kind is one of ours are applied here.
    """
    found, foreign = {}, set()
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if all(d["kind"] in CRDS for d in docs):
            found[path.name] = docs
        else:
            foreign |= {d["kind"] for d in docs}
    assert foreign == {"EC2NodeClass", "NodePool", "Application"}, foreign
    return found


EXAMPLES = example_files()
# The 70B example names `schedulerName: my-scheduler` (the Neuron scheduler extension, which this control plane
# does not run): no scheduler here picks its pod up, so it cannot become Ready. Its pod would fit otherwise: the
# same 12-device, TP 24 replica is scheduled in cascade-8b-to-70b-exact-cache.yaml.
UNSCHEDULABLE_HERE = {("llama-3.3-70b-inf2-48xlarge.yaml", "llama-3-3-70b"): "my-scheduler"}
# minReplicas 0 with no traffic: the model stays at zero (Ready=False, ScaledToZero) and runs no pod.
SCALED_TO_ZERO_HERE = {("scale-to-zero-bedrock-bridge.yaml", "llama-8b")}


@pytest.mark.parametrize("example", EXAMPLES)
async def test_examples_apply_server_side_and_become_ready(kubectl: Kubectl, cluster: Cluster, example: str,
                                                         tmp_path: Path, neuron_nodes: None) -> None:
    ns = cluster.namespace
    docs = copy.deepcopy(EXAMPLES[example])
    # The examples live in namespace `models`; the copy applied here names the test's namespace instead.
    for doc in docs:
        doc["metadata"]["namespace"] = ns
    manifest = tmp_path / example
    manifest.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    applied = await kubectl.arun("apply", "--server-side", "-f", str(manifest))
    assert applied.stdout.splitlines() == [
        f"{resource(d['kind'])}/{d['metadata']['name']} serverside-applied" for d in docs], applied.stdout

    models = [d for d in docs if d["kind"] == "ModelDeployment"]
    async with running_operator(ns, resync_seconds=2.0):
        for doc in docs:
            short = next(s for s, k in SHORT.items() if k == doc["kind"])
            name = doc["metadata"]["name"]
            if (example, name) in UNSCHEDULABLE_HERE:
                continue
            if (example, name) in SCALED_TO_ZERO_HERE:
                await kubectl.arun("wait", "-n", ns, "--for=jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}"
                                   "=ScaledToZero", f"{short}/{name}", "--timeout=150s", timeout=180)
                continue
            await kubectl.arun("wait", "-n", ns, "--for=condition=Ready", f"{short}/{name}", "--timeout=150s",
                               timeout=180)
        for doc in models:
            name = doc["metadata"]["name"]
            if (example, name) in UNSCHEDULABLE_HERE:
                scheduler = UNSCHEDULABLE_HERE[(example, name)]
                pods = await eventually(lambda: cluster.pods(name), timeout=60)
                assert all(p.spec.scheduler_name == scheduler and not p.spec.node_name for p in pods)
                waited = await kubectl.arun("wait", "-n", ns, "--for=condition=Ready", f"md/{name}",
                                            "--timeout=5s", check=False)
                assert waited.returncode != 0 and "timed out" in waited.stderr, waited
                continue
            md = await asyncio.to_thread(cluster.get, "ModelDeployment", name)
            if (example, name) in SCALED_TO_ZERO_HERE:
                assert md["status"]["desiredReplicas"] == 0 and not await asyncio.to_thread(cluster.pods, name)
                continue
            # Every replica, not just the first: placed by kube-scheduler on its instance type, Ready by kwok.
            want = md["status"]["desiredReplicas"]
            await kubectl.arun("wait", "-n", ns, "--for=condition=Ready", "pod", "-l", f"{MODEL_LABEL}={name}",
                               "--timeout=60s", timeout=90)
            pods = await asyncio.to_thread(cluster.pods, name)
            assert len(pods) == want, [p.metadata.name for p in pods]
            for pod in pods:
                node = await asyncio.to_thread(cluster.node, pod.spec.node_name)
                assert node.metadata.labels[INSTANCE_TYPE_LABEL] == md["status"]["sizing"]["instanceType"]


# --- placement --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("instance", ["inf2.xlarge", "inf2.48xlarge", "trn1.2xlarge", "trn1.32xlarge"])
async def test_model_pod_lands_only_on_its_instance_type_tolerating_the_neuron_taint(
        cluster: Cluster, instance: str, neuron_nodes: None) -> None:
    ns = cluster.namespace
    md = make_model_deployment("small", ns, model={"source": SMALL_MODEL},
                               accelerator={"instanceType": instance, "tensorParallelDegree": 2})
    async with running_operator(ns, resync_seconds=2.0):
        await asyncio.to_thread(cluster.create, md)
        (pod,) = await eventually(lambda: [p for p in cluster.pods("small") if p.spec.node_name
                                           and p.status.phase == "Running"], timeout=120)
    node = await asyncio.to_thread(cluster.node, pod.spec.node_name)
    assert node.metadata.labels[INSTANCE_TYPE_LABEL] == instance
    assert pod.spec.node_selector[INSTANCE_TYPE_LABEL] == instance
    taints = {(t.key, t.effect) for t in node.spec.taints or ()}
    assert (NEURON_TAINT_KEY, "NoSchedule") in taints, "a Neuron node without the Neuron taint proves nothing"
    assert any(t.key == NEURON_TAINT_KEY and t.operator == "Exists" and t.effect == "NoSchedule"
               for t in pod.spec.tolerations), pod.spec.tolerations
    assert int(pod.spec.containers[0].resources.requests[NEURON_TAINT_KEY]) == 1


async def test_replicas_smaller_than_a_device_share_it_through_neuroncore_requests(
        cluster: Cluster, neuron_nodes: None) -> None:
    """Two TP-1 replicas ask for one NeuronCore each: both run on the cluster's one inf2.xlarge (one device, two
    cores), which whole-device requests could not do."""
    ns = cluster.namespace
    md = make_model_deployment("tiny", ns, model={"source": SMALL_MODEL}, replicas=2,
                               accelerator={"instanceType": "inf2.xlarge", "tensorParallelDegree": 1})
    async with running_operator(ns, resync_seconds=2.0):
        await asyncio.to_thread(cluster.create, md)
        pods = await eventually(lambda: len(p := [x for x in cluster.pods("tiny") if x.spec.node_name
                                                  and x.status.phase == "Running"]) == 2 and p, timeout=120)
    assert len({p.spec.node_name for p in pods}) == 1
    node = await asyncio.to_thread(cluster.node, pods[0].spec.node_name)
    assert node.metadata.labels[INSTANCE_TYPE_LABEL] == "inf2.xlarge"
    for pod in pods:
        requests = pod.spec.containers[0].resources.requests
        assert requests["aws.amazon.com/neuroncore"] == "1"
        assert NEURON_TAINT_KEY not in requests


async def test_more_neuron_devices_than_the_nodes_hold_stays_pending(cluster: Cluster, neuron_nodes: None) -> None:
    """Two TP-24 replicas on inf2.48xlarge ask for 2 x 12 Neuron devices; the cluster's one inf2.48xlarge has 12.

    (No single replica can ask for more devices than its instance type has: sizing only picks degrees the
    instance can run, and the fake nodes carry their catalog capacity. So the over-ask is across replicas.)
    """
    ns = cluster.namespace
    md = make_model_deployment("big", ns, model={"source": SMALL_MODEL}, replicas=2,
                               accelerator={"instanceType": "inf2.48xlarge", "tensorParallelDegree": 24})
    async with running_operator(ns, resync_seconds=2.0):
        await asyncio.to_thread(cluster.create, md)
        pods = await eventually(lambda: len(p := cluster.pods("big")) == 2 and any(x.spec.node_name for x in p) and p,
                                timeout=120)
        (pending,) = [p for p in pods if not p.spec.node_name]
        event = await eventually(lambda: next((e for e in cluster.events(pending.metadata.name)
                                               if e.reason == "FailedScheduling"), None), timeout=60)
        md = await eventually(lambda: (m := cluster.get("ModelDeployment", "big"))["status"].get("readyReplicas") == 1
                              and m, timeout=60)
        pods = await asyncio.to_thread(cluster.pods, "big")
    assert int(pending.spec.containers[0].resources.requests[NEURON_TAINT_KEY]) == 12
    assert event.type == "Warning"
    assert (event.reporting_component or event.source.component) == "default-scheduler"
    assert "Insufficient aws.amazon.com/neuron" in event.message, event.message
    assert sum(1 for p in pods if p.spec.node_name) == 1, "the second replica must still be Pending"
    assert next(p for p in pods if p.metadata.name == pending.metadata.name).status.phase == "Pending"
    assert md["status"]["desiredReplicas"] == 2
