"""RBAC covers every verb the operator uses: its real requests, recorded by the emulator, against the chart's roles.

Covers: the operator runs against the kmock emulator through a ModelDeployment's life (create with autoscaling
off, the Deployment turning ready, a deleted child re-created, a spec update, the resource deleted); every API
request it made (the test's own requests carry a marker header and are left out, counted exactly) is mapped to
its RBAC verb (get, list, watch, create, update, patch, delete, deletecollection) and must be granted by the rules
of the chart rendered cluster-wide by real Helm; the only non-resource requests are discovery. The chart grants
nothing on Secrets, cluster-wide or per namespace.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import kmock
import pytest

from tests.support.factories import make_model_deployment
from tests.support.kube import NAMESPACE, emulator, eventually, running_operator, stored, write_kubeconfig
from tests.support.rbac import rendered_rules, rules_allow

MARKER = "X-Neuroscale-Test"
MD = "neuroscale.io/v1alpha1/modeldeployments"
DEPLOY, SVC, PDB = "apps/v1/deployments", "v1/services", "policy/v1/poddisruptionbudgets"
BASE = f"/apis/neuroscale.io/v1alpha1/namespaces/{NAMESPACE}/modeldeployments"
DISCOVERY_PREFIXES = ("/api", "/apis", "/version", "/openapi")
ALL_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")


@dataclass(frozen=True)
class Access:
    """What RBAC authorizes one request by."""

    group: str
    resource: str
    subresource: str | None
    verb: str

    def __str__(self) -> str:
        target = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        return f"{self.verb} {self.group or 'core'}:{target}"


def rbac_verb(request: kmock.Request) -> str:
    """The verb the API server's authorizer derives from the HTTP method, the name and `?watch`."""
    method = request.method.value
    if method == "GET":
        if request.params.get("watch") in ("true", "1"):
            return "watch"
        return "get" if request.name else "list"
    if method == "DELETE":
        return "delete" if request.name else "deletecollection"
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch"}
    if method not in verbs:
        raise AssertionError(f"the operator sent {method} {request.url.path}, which no RBAC verb covers")
    return verbs[method]


def is_resource_request(request: kmock.Request) -> bool:
    return request.resource is not None and request.resource.plural is not None


def access(request: kmock.Request) -> Access:
    return Access(request.resource.group or "", request.resource.plural, request.subresource, rbac_verb(request))


class OwnClient:
    """The test's requests to the emulator, each marked so the operator's can be told apart exactly."""

    def __init__(self, server: kmock.KubernetesEmulator) -> None:
        self.server = server
        self.sent = 0

    async def send(self, method: str, path: str, body: dict[str, Any] | None = None) -> None:
        self.sent += 1
        async with self.server.request(method, path, json=body, headers={MARKER: "1"}) as response:
            assert response.status < 300, f"{method} {path}: {response.status} {await response.text()}"


def operator_requests(requests: Iterable[kmock.Request]) -> list[kmock.Request]:
    return [request for request in requests if MARKER not in request.headers]


def container_args(server: kmock.KubernetesEmulator) -> list[str]:
    return stored(server, DEPLOY, "llama")["spec"]["template"]["spec"]["containers"][0]["args"]


@pytest.fixture(scope="module")
def cluster_rules() -> list[dict[str, Any]]:
    return rendered_rules({})


async def exercise_the_operator(server: kmock.KubernetesEmulator, own: OwnClient) -> None:
    await own.send("POST", BASE, make_model_deployment(autoscaling={"enabled": False}))
    await eventually(lambda: stored(server, DEPLOY, "llama") and stored(server, SVC, "llama")
                     and stored(server, PDB, "llama"))
    await own.send("PATCH", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/llama/status",
                   {"status": {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 1, "availableReplicas": 1}})
    await eventually(lambda: (stored(server, MD, "llama").get("status") or {}).get("readyReplicas") == 1)

    await own.send("DELETE", f"/api/v1/namespaces/{NAMESPACE}/services/llama")
    await eventually(lambda: stored(server, SVC, "llama"))

    await own.send("PATCH", f"{BASE}/llama", {"spec": {"batching": {"maxNumSeqs": 16}}})
    await eventually(lambda: "16" in container_args(server))

    await own.send("DELETE", f"{BASE}/llama")
    await eventually(lambda: all(stored(server, r, "llama") is None for r in (DEPLOY, SVC, PDB)))


async def test_chart_rbac_grants_every_request_the_operator_makes(tmp_path, cluster_rules) -> None:
    async with emulator() as server:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", str(server.url))
        own = OwnClient(server)
        async with running_operator(kubeconfig):
            await exercise_the_operator(server, own)
        requests = list(server)

    mine = operator_requests(requests)
    assert len(requests) - len(mine) == own.sent, "every marked request is the test's own, and only those"

    non_resource = sorted({r.url.path for r in mine if not is_resource_request(r)})
    assert all(path.startswith(DISCOVERY_PREFIXES) for path in non_resource), non_resource

    used: dict[Access, str] = {}
    for request in mine:
        if is_resource_request(request):
            used.setdefault(access(request), f"{request.method.value} {request.url.path_qs}")

    # The scenario really drove the operator through its writes, or an empty log would pass.
    expected = {
        Access("neuroscale.io", "modeldeployments", None, "watch"),
        Access("neuroscale.io", "modeldeployments", "status", "patch"),
        Access("apps", "deployments", None, "create"),
        Access("apps", "deployments", None, "patch"),
        Access("", "services", None, "create"),
        Access("", "services", None, "delete"),
        Access("", "events", None, "create"),
    }
    assert expected <= set(used), f"missing from the log: {sorted(map(str, expected - set(used)))}"

    gaps = [f"{a}  (e.g. {used[a]})" for a in sorted(used, key=str)
            if not rules_allow(cluster_rules, a.group, a.resource, a.verb, a.subresource)]
    assert not gaps, "the chart's ClusterRole does not grant:\n" + "\n".join(gaps)


@pytest.mark.parametrize("values", [{}, {"watchNamespaces": ["team-a"]}], ids=["cluster-wide", "namespaced"])
def test_chart_grants_nothing_on_secrets(values: dict[str, Any]) -> None:
    rules = rendered_rules(values)
    assert rules, "the chart rendered no roles"
    granted = [verb for verb in ALL_VERBS if rules_allow(rules, "", "secrets", verb)]
    assert granted == [], f"Secrets are readable or writable through the chart's roles: {granted}"
