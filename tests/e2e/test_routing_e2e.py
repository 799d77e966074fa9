"""Replica routing on a real API server, with the operator in-process: a cascade with a ModelDeployment tier gets a
gateway ServiceAccount, a Role that reads EndpointSlices and a RoleBinding, all owned by the cascade; under a
TokenRequest token of that ServiceAccount the gateway may list EndpointSlices in its namespace and nothing else
(pods, Secrets, another namespace's EndpointSlices are refused); the gateway's own EndpointSlice watch, under that
token, sees the ModelDeployment's pods that kwok runs (their IPs on the engine port, ready), follows a scale-up to
two replicas, and a routing policy of `service` takes the Role, RoleBinding and ServiceAccount away again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest

from neuroscale.gateway.endpoint_watch import EndpointSliceWatch
from neuroscale.routing.config import ReplicaRouting
from neuroscale.routing.endpoints import Replica
from tests.e2e.cluster import eventually, running_operator
from tests.e2e.test_inferencecascade_e2e import GATEWAY, MODEL_PODS, Cluster

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

@pytest.fixture
def cluster(api: Any, namespace: str) -> Cluster:
    return Cluster(api, namespace)


@pytest.fixture
def rbac(api: Any) -> Any:
    return kubernetes.client.RbacAuthorizationV1Api(api)


def as_gateway(cluster: Cluster) -> kubernetes.client.ApiClient:
    """An ApiClient holding only a TokenRequest token of the gateway's ServiceAccount."""
    token = cluster.core.create_namespaced_service_account_token(
        GATEWAY, cluster.namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    admin = cluster.api.configuration
    configuration = kubernetes.client.Configuration()
    configuration.host, configuration.ssl_ca_cert, configuration.verify_ssl = (
        admin.host, admin.ssl_ca_cert, admin.verify_ssl)
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return kubernetes.client.ApiClient(configuration)


def refused(call: Any, *args: Any) -> int:
    with pytest.raises(kubernetes.client.ApiException) as error:
        call(*args)
    return error.value.status


def engine_port(pod: dict[str, Any]) -> int:
    """The container port the Service's `http` target port names (the Service itself listens elsewhere)."""
    return next(port["containerPort"] for container in pod["spec"]["containers"]
                for port in container.get("ports", []) if port.get("name") == "http")


def ready_pod_addresses(cluster: Cluster) -> list[Replica]:
    return sorted(Replica(f"{pod['status']['podIP']}:{engine_port(pod)}", True) for pod in cluster.pods(MODEL_PODS)
                  if pod.get("status", {}).get("podIP")
                  and any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"].get("conditions", [])))


@pytest.fixture
def watch_stopper() -> Iterator[list[EndpointSliceWatch]]:
    watches: list[EndpointSliceWatch] = []
    yield watches
    for watch in watches:
        watch.stop()


async def test_the_gateway_watches_its_tiers_endpointslices_under_least_privilege(
    cluster: Cluster, rbac: Any, watch_stopper: list[EndpointSliceWatch],
) -> None:
    ns = cluster.namespace
    async with running_operator(ns):
        await asyncio.to_thread(cluster.create_md)
        created = await asyncio.to_thread(cluster.create_ic)

        def rbac_rendered() -> bool:
            role = rbac.read_namespaced_role(GATEWAY, ns)
            binding = rbac.read_namespaced_role_binding(GATEWAY, ns)
            account = cluster.core.read_namespaced_service_account(GATEWAY, ns)
            for child in (role, binding, account):
                (owner,) = child.metadata.owner_references
                assert owner.uid == created["metadata"]["uid"]
            assert [(r.api_groups, r.resources, r.verbs) for r in role.rules] == [
                (["discovery.k8s.io"], ["endpointslices"], ["get", "list", "watch"])]
            assert [(s.kind, s.name) for s in binding.subjects] == [("ServiceAccount", GATEWAY)]
            return True

        await eventually(rbac_rendered)
        template = await asyncio.to_thread(cluster.template)
        assert template["spec"]["serviceAccountName"] == GATEWAY
        assert template["spec"]["automountServiceAccountToken"] is True

        gateway_api = await asyncio.to_thread(as_gateway, cluster)
        discovery, core = kubernetes.client.DiscoveryV1Api(gateway_api), kubernetes.client.CoreV1Api(gateway_api)
        await eventually(lambda: discovery.list_namespaced_endpoint_slice(ns) is not None)
        assert await asyncio.to_thread(refused, core.list_namespaced_pod, ns) == 403
        assert await asyncio.to_thread(refused, core.list_namespaced_secret, ns) == 403
        assert await asyncio.to_thread(refused, discovery.list_namespaced_endpoint_slice, "default") == 403

        published: list[list[Replica]] = []
        routing = ReplicaRouting(service="llama", namespace=ns)
        watch = EndpointSliceWatch(routing, published.append, asyncio.get_running_loop(), api=gateway_api)
        watch_stopper.append(watch)
        watch.start()

        def sees_every_ready_pod(count: int) -> bool:
            pods = ready_pod_addresses(cluster)
            seen = [r for r in published[-1] if r.ready] if published else None
            assert len(pods) == count and seen == pods, f"ready pods {pods}, the watch saw {seen}"
            return True

        await eventually(lambda: sees_every_ready_pod(1), timeout=120)
        await asyncio.to_thread(cluster.patch, "modeldeployments", "llama", {"spec": {"replicas": 2}})
        await eventually(lambda: sees_every_ready_pod(2), timeout=120)

        await asyncio.to_thread(cluster.patch, "inferencecascades", "chat", {"spec": {"routing": {"policy": "service"}}})

        def gone(read: Any) -> bool:
            try:
                read(GATEWAY, ns)
            except kubernetes.client.ApiException as error:
                return error.status == 404
            return False

        def rbac_removed() -> bool:
            reads = (rbac.read_namespaced_role, rbac.read_namespaced_role_binding,
                     cluster.core.read_namespaced_service_account)
            return all(gone(read) for read in reads) and not cluster.template()["spec"]["automountServiceAccountToken"]

        await eventually(rbac_removed)
