"""The Helm chart on a real API server: real `helm install` / `helm upgrade` (helm-sdkpy), and the operator run under
the chart's own ServiceAccount with the real RBAC authorizer counting every refusal.

Covers: the API server accepts the chart's CRDs from scratch (structural schema, CEL rules compiled; a server-side
dry run under a throwaway group) and serves exactly them, Established, as objects no release owns; a namespaced
release (watchNamespaces = two test namespaces, in a namespace Helm creates) and a cluster-wide default release
install side by side, every rendered object on the server with Helm's ownership metadata and through the server's
strict field validation, the operator Deployment Available; an upgrade that drops a watched namespace deletes that
namespace's Role and RoleBinding and the authorizer stops granting there; bad values fail with the schema message
and create nothing; a peered install creates kopf's peering CRDs (kept on uninstall) and a KopfPeering per watched
namespace, and an upgrade adding a namespace leaves the existing one and its live lease alone. Least privilege, as
the authorizer sees it: under a TokenRequest token of each release's ServiceAccount the operator takes a
ModelDeployment through its life (create, pods Ready, a deleted child restored, a spec update, delete) and an
InferenceCascade with a CacheTier (gateway, its ServiceAccount, the Role and RoleBinding that let it read
EndpointSlices, Redis and its NetworkPolicy; deleted again) without one refused request: the API server's refusal
counters do not move (local control plane) and the operator logs no "Forbidden"/403; and the chart grants nothing on
Secrets (SubjectAccessReview for every verb, and the ServiceAccount's own SelfSubjectAccessReview).

The CRDs are cluster-scoped and may already be installed (by the `crds` fixture of another module, or by an earlier
release). Helm installs crds/ only when absent and never upgrades them, so this module does what a user upgrading
does: when any of the chart's CRDs exists, they are server-side applied first (`kubectl apply --server-side
--force-conflicts -f helm/neuroscale/crds`, the README's `neuroscale crds | kubectl apply --server-side -f -`) and
the installs then skip them; on a cluster without them the first `helm install` creates them itself.

Against an external cluster (NEUROSCALE_E2E=1) the releases run no operator pod (replicaCount 0: a real image could
otherwise act on the test namespaces), the pods-Ready steps are left out (no Neuron nodes), and so is the refusal
count (other clients may be refused meanwhile); the log check and every other assertion stay.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import pytest
from kubernetes.client import ApiException

from tests.e2e.cluster import eventually, running_operator, wait_for
from tests.support.factories import make_cache_tier, make_inference_cascade, make_model_deployment
from tests.support.helm_chart import HelmFailed, Release, chart_crds, on_cluster, run_sync

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GROUP, VERSION = "neuroscale.io", "v1alpha1"
ALL_VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
HELM_RELEASE_NAME, HELM_RELEASE_NAMESPACE = "meta.helm.sh/release-name", "meta.helm.sh/release-namespace"
KOPF_PEERING_CRDS = ("clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev")
APPLY_PATCH = "application/apply-patch+yaml"
# What a refused request leaves in the operator's log: the API server's "... is forbidden: User ...", kopf's
# APIForbiddenError and "Not enough permissions ...", our KubeError "HTTP 403: ...", urllib3's '"GET ... HTTP/1.1"
# 403 <length>', a status body's code. Not a 403-byte response ('HTTP/1.1" 200 403'), "0.403s" or a uid.
REFUSAL_IN_LOG = re.compile(
    r'forbidden|not enough (rbac )?permissions|HTTP/[\d.]+" 403\b|\bHTTP 403\b|\b(status|code)\W{0,4}403\b',
    re.IGNORECASE)


# --- the cluster ------------------------------------------------------------------------------------------------


class Kube:
    """Typed views of the API groups the tests use, all on one (admin) ApiClient."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.core = kubernetes.client.CoreV1Api(api)
        self.apps = kubernetes.client.AppsV1Api(api)
        self.rbac = kubernetes.client.RbacAuthorizationV1Api(api)
        self.ext = kubernetes.client.ApiextensionsV1Api(api)
        self.custom = kubernetes.client.CustomObjectsApi(api)
        self.authz = kubernetes.client.AuthorizationV1Api(api)
        self._dynamic: Any = None

    def raw(self, method: str, path: str, body: Any = None, *, query: dict[str, str] | None = None,
            content_type: str | None = None, accept: str = "application/json") -> Any:
        """One request as it is; the decoded JSON answer (text for non-JSON), ApiException on an error status."""
        headers = {"Accept": accept, **({"Content-Type": content_type} if content_type else {})}
        _, url, hdrs, serialized, _ = self.api.param_serialize(
            method=method, resource_path=path, header_params=headers, body=body, auth_settings=["BearerToken"],
            query_params=list((query or {}).items()))
        response = self.api.call_api(method, url, header_params=hdrs, body=serialized, _request_timeout=30)
        response.read()
        if response.status >= 400:
            raise ApiException(status=response.status, reason=response.reason, http_resp=response)
        text = response.data.decode() if isinstance(response.data, bytes) else response.data
        return json.loads(text) if accept == "application/json" and text else text

    def path(self, obj: dict[str, Any]) -> str:
        """The REST path of `obj` (its kind looked up in the server's discovery)."""
        if self._dynamic is None:
            self._dynamic = kubernetes.dynamic.DynamicClient(self.api)
        resource = self._dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        namespace = obj["metadata"].get("namespace") if resource.namespaced else None
        return resource.path(name=obj["metadata"]["name"], namespace=namespace)

    def read(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """The live copy of `obj`, or None when the server has none."""
        try:
            return self.raw("GET", self.path(obj))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def established(self, name: str) -> bool:
        try:
            conditions = self.ext.read_custom_resource_definition(name).status.conditions or []
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return any(c.type == "Established" and c.status == "True" for c in conditions)

    def crd_exists(self, name: str) -> bool:
        try:
            self.ext.read_custom_resource_definition(name)
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def allowed(self, user: str, verb: str, resource: str, *, group: str = "", namespace: str | None = None,
                subresource: str | None = None) -> bool:
        """The authorizer's answer for `user` (a ServiceAccount, with its groups), by SubjectAccessReview."""
        attributes = {"verb": verb, "group": group, "resource": resource, "namespace": namespace or "",
                      "subresource": subresource or ""}
        sa_namespace = user.split(":")[2]
        review = self.authz.create_subject_access_review({"spec": {
            "user": user, "resourceAttributes": attributes,
            "groups": ["system:serviceaccounts", f"system:serviceaccounts:{sa_namespace}", "system:authenticated"],
        }})
        return bool(review.status.allowed)

    def refusals(self) -> dict[str, float]:
        """The API server's own counts of refused requests, from its /metrics.

        `authorization_attempts_total{result!="allowed"}` counts every request the RBAC authorizer did not allow
        (RBAC answers "no-opinion" when no rule matches, and the request gets 403); `apiserver_request_total
        {code="403"}` counts the 403s given after authorization (admission). The authorizer's 403s are answered by a
        filter before the instrumented handlers, so they never show in apiserver_request_total: both are needed.
        """
        from prometheus_client.parser import text_string_to_metric_families

        counts: dict[str, float] = {}
        for family in text_string_to_metric_families(self.raw("GET", "/metrics", accept="text/plain")):
            for sample in family.samples:
                if sample.name == "authorization_attempts_total" and sample.labels.get("result") != "allowed":
                    key = f"authorization_attempts_total{{result={sample.labels.get('result')}}}"
                elif sample.name == "apiserver_request_total" and sample.labels.get("code") == "403":
                    labels = sample.labels
                    key = (f"apiserver_request_total{{code=403,verb={labels.get('verb')},"
                           f"resource={labels.get('resource')}/{labels.get('subresource')}}}")
                else:
                    continue
                counts[key] = counts.get(key, 0.0) + sample.value
        return counts


def total(counts: dict[str, float]) -> int:
    return int(sum(counts.values()))


@dataclass
class Namespaces:
    """Throwaway namespaces of this module, deleted at its end (with everything in them)."""

    kube: Kube
    names: list[str] = field(default_factory=list)

    def reserve(self) -> str:
        """A fresh name, for Helm's --create-namespace."""
        name = f"neuroscale-e2e-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        return name

    def create(self) -> str:
        name = self.reserve()
        self.kube.core.create_namespace({"metadata": {"name": name,
                                                      "labels": {"app.kubernetes.io/part-of": "neuroscale-e2e"}}})
        return name

    def delete_all(self) -> None:
        for name in self.names:
            with contextlib.suppress(ApiException):
                self.kube.core.delete_namespace(name, propagation_policy="Background")


@dataclass
class Installed:
    """A release on the cluster: its name (the chart's full name, so also its ServiceAccount's), namespace, values."""

    name: str
    namespace: str
    values: dict[str, Any]
    release: Release

    @property
    def watched(self) -> list[str]:
        return list(self.values.get("watchNamespaces") or [])

    @property
    def user(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


@pytest.fixture(scope="module")
def kube(api: Any) -> Kube:
    return Kube(api)


@pytest.fixture(scope="module")
def local(control_plane: Any) -> bool:
    """True on the local control plane (fake Neuron nodes, nothing else running), False on an external cluster."""
    return control_plane is not None


@pytest.fixture(scope="module")
def helm(control_plane: Any, kube: Kube) -> Callable[..., Release]:
    """`helm(action, values, release=..., namespace=..., **options)`: one real Helm command against the cluster."""
    version = kube.raw("GET", "/version")["gitVersion"]
    if version.startswith("v0.0.0"):
        # Helm checks the chart's kubeVersion (>=1.26.0-0) against this and refuses every install.
        pytest.fail(f"the API server reports gitVersion {version!r}, not a Kubernetes release: "
                    + ("its binaries were built without the version stamp (scripts/build-control-plane.sh: go build "
                       "-ldflags '-X k8s.io/component-base/version.gitVersion=v1.35.4 ...')"
                       if control_plane is not None else "Helm cannot check the chart's kubeVersion against it"))
    kubeconfig = Path(control_plane.kubeconfig) if control_plane is not None else None

    def run(action: str, values: dict[str, Any] | None = None, *, release: str, namespace: str,
            **options: Any) -> Release:
        if action != "uninstall":
            options = {"wait": True, "timeout": 90, **options}
        return run_sync(on_cluster(action, values, kubeconfig=kubeconfig, release=release, namespace=namespace,
                                   **options))
    return run


@pytest.fixture(scope="module")
def namespaces(kube: Kube) -> Iterator[Namespaces]:
    made = Namespaces(kube)
    try:
        yield made
    finally:
        made.delete_all()


def operator_replicas(local: bool, wanted: int = 1) -> int:
    """Fake pods on the local control plane; none on a real cluster, where the image could really run."""
    return wanted if local else 0


@pytest.fixture(scope="module")
def chart_crds_source(kube: Kube) -> str:
    """Get the chart's CRDs onto the cluster as a user would: "helm" (absent: the first install creates them) or
    "applied" (some exist: server-side applied first, as for an upgrade; Helm then skips them)."""
    crds = chart_crds()
    if not any(kube.crd_exists(crd["metadata"]["name"]) for crd in crds):
        return "helm"
    for crd in crds:
        kube.raw("PATCH", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{crd['metadata']['name']}",
                 crd, content_type=APPLY_PATCH, query={"fieldManager": "kubectl", "force": "true"})
    for crd in crds:
        wait_for(lambda name=crd["metadata"]["name"]: kube.established(name), timeout=60,
                 what=f"CRD {crd['metadata']['name']} Established")
    return "applied"


def install(helm: Callable[..., Release], namespaces: Namespaces, values: dict[str, Any], *,
            name: str = "neuroscale") -> Installed:
    """`helm install NAME ./helm/neuroscale -n <fresh namespace> --create-namespace --wait` with `values`."""
    namespace = namespaces.reserve()
    release = helm("install", values, release=name, namespace=namespace, create_namespace=True)
    return Installed(name, namespace, values, release)


@contextlib.contextmanager
def uninstalled_after(helm: Callable[..., Release], installed: Installed) -> Iterator[Installed]:
    try:
        yield installed
    finally:
        with contextlib.suppress(HelmFailed):
            helm("uninstall", release=installed.name, namespace=installed.namespace)


@pytest.fixture(scope="module")
def namespaced_release(helm: Callable[..., Release], namespaces: Namespaces, chart_crds_source: str,
                       local: bool) -> Iterator[Installed]:
    """Release "neuroscale" watching two test namespaces: a Role and RoleBinding in each, nothing cluster-wide."""
    values = {"watchNamespaces": [namespaces.create(), namespaces.create()], "replicaCount": operator_replicas(local)}
    with uninstalled_after(helm, install(helm, namespaces, values)) as installed:
        yield installed


@pytest.fixture(scope="module")
def cluster_release(helm: Callable[..., Release], namespaces: Namespaces, namespaced_release: Installed,
                    local: bool) -> Iterator[Installed]:
    """The default (cluster-wide) install next to the namespaced one; its own name, so its ClusterRole is its own."""
    values = {} if local else {"replicaCount": 0}
    name = f"neuroscale-e2e-{uuid.uuid4().hex[:6]}"
    with uninstalled_after(helm, install(helm, namespaces, values, name=name)) as installed:
        yield installed


# --- CRDs -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("crd", chart_crds(), ids=lambda crd: crd["metadata"]["name"])
def test_the_api_server_accepts_and_serves_the_charts_crds(
    kube: Kube, crd: dict[str, Any], namespaced_release: Installed, cluster_release: Installed,
) -> None:
    # From scratch, whatever is installed: the same CRD under a throwaway group, created in a dry run, goes through
    # every check a first install meets (structural schema, CEL compilation and cost, strict field validation).
    probe = copy.deepcopy(crd)
    group = f"dryrun-{uuid.uuid4().hex[:8]}.e2e.neuroscale.io"
    probe["spec"]["group"] = group
    probe["metadata"] = {"name": f"{crd['spec']['names']['plural']}.{group}"}
    accepted = kube.ext.create_custom_resource_definition(probe, dry_run="All", field_validation="Strict")
    assert accepted.metadata.name == probe["metadata"]["name"]

    # The chart's CRD is what the server serves, Established, and no release owns it (uninstalls leave it).
    name = crd["metadata"]["name"]
    live = kube.api.sanitize_for_serialization(kube.ext.read_custom_resource_definition(name))
    conditions = {c["type"]: c["status"] for c in live["status"]["conditions"]}
    assert conditions.get("Established") == "True" and conditions.get("NamesAccepted") == "True", conditions
    assert conditions.get("NonStructuralSchema") in (None, "False"), conditions
    for key in ("group", "names", "scope", "versions"):
        assert live["spec"][key] == crd["spec"][key], f"{name}: the served spec.{key} is not the chart's"
    assert HELM_RELEASE_NAME not in (live["metadata"].get("annotations") or {})


# --- installs ---------------------------------------------------------------------------------------------------


def identity(obj: dict[str, Any]) -> tuple[str, str | None, str]:
    return obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]


@pytest.mark.parametrize("which", ["namespaced", "cluster-wide"])
def test_install_creates_the_rendered_objects_with_helm_ownership(
    kube: Kube, request: pytest.FixtureRequest, which: str, local: bool,
) -> None:
    installed: Installed = request.getfixturevalue("namespaced_release" if which == "namespaced" else "cluster_release")
    release, name, namespace = installed.release, installed.name, installed.namespace
    assert (release.status, release.revision) == ("deployed", 1)
    assert release.hooks == []

    expected = {("ServiceAccount", namespace, name), ("Deployment", namespace, name),
                ("Service", namespace, f"{name}-metrics")}
    if installed.watched:
        expected |= {(kind, ns, name) for ns in installed.watched for kind in ("Role", "RoleBinding")}
    else:
        expected |= {("ClusterRole", None, name), ("ClusterRoleBinding", None, name)}
    assert {identity(obj) for obj in release.manifests} == expected

    for obj in release.manifests:
        live = kube.read(obj)
        assert live is not None, f"{identity(obj)} is in the release but not on the server"
        meta = live["metadata"]
        assert (meta["annotations"][HELM_RELEASE_NAME], meta["annotations"][HELM_RELEASE_NAMESPACE]) == (name, namespace)
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "Helm"
        # Unknown or duplicate fields would have been dropped silently on create; strict validation names them.
        kube.raw("PATCH", kube.path(obj), obj, content_type=APPLY_PATCH, query={
            "dryRun": "All", "fieldValidation": "Strict", "fieldManager": "neuroscale-e2e-check", "force": "true"})

    records = kube.core.list_namespaced_secret(namespace, label_selector=f"owner=helm,name={name}").items
    assert [(s.metadata.labels["status"], s.metadata.labels["version"]) for s in records] == [("deployed", "1")]

    deployment = kube.apps.read_namespaced_deployment(name, namespace)
    args = deployment.spec.template.spec.containers[0].args
    if installed.watched:
        assert [a for a in args if a.startswith("--namespace=")] == [f"--namespace={ns}" for ns in installed.watched]
    else:
        assert "--all-namespaces" in args
    assert deployment.spec.template.spec.service_account_name == name
    # `helm install --wait` returned: the operator pod (a kwok pod here) is scheduled and Ready.
    assert (deployment.status.available_replicas or 0) == operator_replicas(local)
    assert namespace in release.notes


def test_upgrade_that_drops_a_watched_namespace_removes_its_rights(
    kube: Kube, helm: Callable[..., Release], namespaces: Namespaces, chart_crds_source: str, local: bool,
) -> None:
    dropped, kept = namespaces.create(), namespaces.create()
    values = {"watchNamespaces": [dropped, kept], "replicaCount": operator_replicas(local)}
    with uninstalled_after(helm, install(helm, namespaces, values)) as installed:
        for ns in (dropped, kept):
            assert kube.allowed(installed.user, "watch", "modeldeployments", group=GROUP, namespace=ns)

        upgraded = helm("upgrade", {**values, "watchNamespaces": [kept]}, release=installed.name,
                        namespace=installed.namespace)
        assert (upgraded.status, upgraded.revision) == ("deployed", 2)

        def rights(ns: str) -> list[str]:
            return ([r.metadata.name for r in kube.rbac.list_namespaced_role(ns).items]
                    + [b.metadata.name for b in kube.rbac.list_namespaced_role_binding(ns).items])
        assert rights(dropped) == []
        assert rights(kept) == [installed.name, installed.name]
        assert not kube.allowed(installed.user, "watch", "modeldeployments", group=GROUP, namespace=dropped)
        assert kube.allowed(installed.user, "watch", "modeldeployments", group=GROUP, namespace=kept)
        args = kube.apps.read_namespaced_deployment(installed.name, installed.namespace).spec.template.spec.containers[0].args
        assert [a for a in args if a.startswith("--namespace=")] == [f"--namespace={kept}"]


def test_bad_values_fail_with_the_schema_message_and_create_nothing(
    kube: Kube, helm: Callable[..., Release], namespaces: Namespaces, chart_crds_source: str,
) -> None:
    namespace = namespaces.reserve()
    with pytest.raises(HelmFailed, match="replicaCount") as failure:
        helm("install", {"replicaCount": "many"}, release="neuroscale", namespace=namespace, create_namespace=True)
    assert failure.value.kind == "InstallError"
    assert "integer" in failure.value.message
    assert kube.core.list_namespaced_secret(namespace, label_selector="owner=helm").items == []
    assert kube.apps.list_namespaced_deployment(namespace).items == []
    assert [sa.metadata.name for sa in kube.core.list_namespaced_service_account(namespace).items] in ([], ["default"])


def test_peered_install_and_upgrade_keep_the_live_peering_lease(
    kube: Kube, helm: Callable[..., Release], namespaces: Namespaces, chart_crds_source: str, local: bool,
) -> None:
    # kopf's peering CRDs are shared by every kopf operator and kept on uninstall: where they exist already (another
    # operator, an earlier release) the chart is told not to install them, as values.yaml says.
    install_crds = not any(kube.crd_exists(name) for name in KOPF_PEERING_CRDS)
    first, second = namespaces.create(), namespaces.create()
    values = {"peering": {"enabled": True, "installCRDs": install_crds}, "replicaCount": operator_replicas(local, 2),
              "watchNamespaces": [first]}
    installed = install(helm, namespaces, values)
    try:
        assert [identity(hook) for hook in installed.release.hooks] == [("KopfPeering", first, installed.name)]
        for name in KOPF_PEERING_CRDS:
            assert kube.established(name), name
            annotations = kube.ext.read_custom_resource_definition(name).metadata.annotations or {}
            if install_crds:
                assert annotations.get("helm.sh/resource-policy") == "keep"
        peering = kube.custom.get_namespaced_custom_object("kopf.dev", "v1", first, "kopfpeerings", installed.name)
        # A live operator pod's lease, as kopf writes it.
        lease = {"neuroscale-7d9f-abcde@10.0.0.7": {"priority": 1234, "lifetime": 60,
                                                    "lastseen": "2026-01-01T00:00:00.000000"}}
        kube.custom.patch_namespaced_custom_object("kopf.dev", "v1", first, "kopfpeerings", installed.name,
                                                   {"status": lease})

        upgraded = helm("upgrade", {**values, "replicaCount": operator_replicas(local, 3),
                                    "watchNamespaces": [first, second]},
                        release=installed.name, namespace=installed.namespace)
        assert [identity(hook) for hook in upgraded.hooks] == [("KopfPeering", second, installed.name)]
        kept = kube.custom.get_namespaced_custom_object("kopf.dev", "v1", first, "kopfpeerings", installed.name)
        assert kept["metadata"]["uid"] == peering["metadata"]["uid"]
        assert kept["status"] == lease
        kube.custom.get_namespaced_custom_object("kopf.dev", "v1", second, "kopfpeerings", installed.name)
        assert {r.metadata.namespace for r in kube.rbac.list_role_for_all_namespaces(
            label_selector=f"app.kubernetes.io/instance={installed.name}").items} >= {first, second}
        deployment = kube.apps.read_namespaced_deployment(installed.name, installed.namespace)
        assert f"--peering={installed.name}" in deployment.spec.template.spec.containers[0].args
        assert deployment.spec.strategy.type == "RollingUpdate"
    finally:
        helm("uninstall", release=installed.name, namespace=installed.namespace)
    for name in KOPF_PEERING_CRDS:
        assert kube.crd_exists(name), f"{name} went with the release; it must be kept for other kopf operators"


# --- least privilege ----------------------------------------------------------------------------------------------


def service_account_client(kube: Kube, installed: Installed) -> tuple[Any, Callable[..., Any]]:
    """An ApiClient and a kopf login with a TokenRequest token of the release's own ServiceAccount, nothing else."""
    import kopf

    token = kube.core.create_namespaced_service_account_token(
        installed.name, installed.namespace, {"spec": {"expirationSeconds": 3600}}).status.token
    admin = kube.api.configuration
    configuration = kubernetes.client.Configuration()
    configuration.host, configuration.ssl_ca_cert, configuration.verify_ssl = (
        admin.host, admin.ssl_ca_cert, admin.verify_ssl)
    configuration.api_key = {"authorization": f"Bearer {token}"}

    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=admin.host, ca_path=admin.ssl_ca_cert, insecure=not admin.verify_ssl,
                                   token=token)
    return kubernetes.client.ApiClient(configuration), login


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in (obj.get("status") or {}).get("conditions", []) if c["type"] == type_), None)


def wait_until_quiet(kube: Kube) -> None:
    """No namespace is being deleted: the controllers emptying one are refused writes into it (403), which would
    count in the window."""
    def quiet() -> bool:
        return not [ns for ns in kube.core.list_namespace().items if ns.status.phase == "Terminating"]
    wait_for(quiet, timeout=180, what="no namespace Terminating")


class Scenario:
    """The test's own (admin) reads and writes in the namespace the operator watches."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube, self.ns = kube, namespace

    def create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        body["metadata"] = {"name": body["metadata"]["name"], "namespace": self.ns}
        return self.kube.custom.create_namespaced_custom_object(GROUP, VERSION, self.ns, plural, body)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        return self.kube.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name)

    def delete(self, plural: str, name: str) -> None:
        self.kube.custom.delete_namespaced_custom_object(GROUP, VERSION, self.ns, plural, name)

    def gone(self, plural: str, name: str) -> bool:
        try:
            self.get(plural, name)
        except ApiException as exc:
            if exc.status == 404:
                return True
            raise
        return False

    def objects(self, name: str, kinds: tuple[tuple[str, str], ...]) -> dict[str, Any]:
        """kind → the live object named `name`, or None."""
        return {kind: self.kube.read({"apiVersion": api_version, "kind": kind,
                                      "metadata": {"name": name, "namespace": self.ns}})
                for api_version, kind in kinds}

    def events(self, name: str) -> list[Any]:
        return self.kube.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items


MD_CHILDREN = (("apps/v1", "Deployment"), ("v1", "Service"), ("policy/v1", "PodDisruptionBudget"))
# The Role and RoleBinding let the gateway read its ModelDeployment tier's EndpointSlices (prefix routing, the
# default): the operator grants them under the chart's RBAC, which holds those verbs but no escalate or bind.
GATEWAY_CHILDREN = (("apps/v1", "Deployment"), ("v1", "Service"), ("v1", "ConfigMap"), ("v1", "ServiceAccount"),
                    ("rbac.authorization.k8s.io/v1", "Role"), ("rbac.authorization.k8s.io/v1", "RoleBinding"))
REDIS_CHILDREN = (("apps/v1", "Deployment"), ("v1", "Service"), ("networking.k8s.io/v1", "NetworkPolicy"))


async def model_deployment_life(s: Scenario, *, pods_run: bool) -> None:
    """create → children and Sized; pods Ready; a deleted Service restored; a spec update rolled out."""
    await asyncio.to_thread(s.create, "modeldeployments", make_model_deployment("llama", s.ns))

    def settled() -> dict[str, Any] | None:
        md = s.get("modeldeployments", "llama")
        fresh = (md.get("status") or {}).get("observedGeneration") == md["metadata"]["generation"]
        sized = (condition(md, "Sized") or {}).get("status") == "True"
        return md if fresh and sized and all(s.objects("llama", MD_CHILDREN).values()) else None
    await eventually(settled, timeout=120)
    if pods_run:
        # kwok runs the pod on a fake inf2 node: the status follows the Deployment's ready replicas.
        await eventually(lambda: (md := s.get("modeldeployments", "llama"))["status"].get("readyReplicas") == 1
                         and condition(md, "Ready")["status"] == "True", timeout=120)

    before = (await asyncio.to_thread(s.objects, "llama", MD_CHILDREN))["Service"]["metadata"]["uid"]
    await asyncio.to_thread(s.kube.core.delete_namespaced_service, "llama", s.ns)
    await eventually(lambda: (svc := s.objects("llama", MD_CHILDREN)["Service"]) and svc["metadata"]["uid"] != before)
    await eventually(lambda: any(e.reason == "Restored" for e in s.events("llama")))

    await asyncio.to_thread(s.kube.custom.patch_namespaced_custom_object, GROUP, VERSION, s.ns, "modeldeployments",
                            "llama", {"spec": {"batching": {"maxNumSeqs": 16}}})

    def rolled() -> bool:
        args = s.kube.apps.read_namespaced_deployment("llama", s.ns).spec.template.spec.containers[0].args
        md = s.get("modeldeployments", "llama")
        return args[args.index("--max-num-seqs") + 1] == "16" and md["status"]["observedGeneration"] == 2
    await eventually(rolled, timeout=120)


async def cascade_with_cache_life(s: Scenario, *, pods_run: bool) -> None:
    """A CacheTier (Redis, its NetworkPolicy) and an InferenceCascade using it (gateway with its own ServiceAccount)."""
    await asyncio.to_thread(s.create, "cachetiers", make_cache_tier("answers", s.ns))
    await asyncio.to_thread(s.create, "inferencecascades", make_inference_cascade(
        "chat", s.ns, cacheTierRef={"name": "answers"},
        gateway={"replicas": 1, "serviceAccount": {"roleArn": "arn:aws:iam::111122223333:role/neuroscale-gateway"}}))
    await eventually(lambda: all(s.objects("answers-redis", REDIS_CHILDREN).values()), timeout=120)
    await eventually(lambda: all(s.objects("chat-gateway", GATEWAY_CHILDREN).values()), timeout=120)
    if pods_run:
        await eventually(lambda: condition(s.get("cachetiers", "answers"), "Ready")["status"] == "True", timeout=120)
        await eventually(lambda: condition(s.get("inferencecascades", "chat"), "CacheReady")["status"] == "True"
                         and condition(s.get("inferencecascades", "chat"), "Ready")["status"] == "True", timeout=120)


async def delete_everything(s: Scenario) -> None:
    for plural, name, children, kinds in (("inferencecascades", "chat", "chat-gateway", GATEWAY_CHILDREN),
                                          ("cachetiers", "answers", "answers-redis", REDIS_CHILDREN),
                                          ("modeldeployments", "llama", "llama", MD_CHILDREN)):
        await asyncio.to_thread(s.delete, plural, name)
        await eventually(lambda p=plural, n=name: s.gone(p, n))
        await eventually(lambda c=children, k=kinds: not any(s.objects(c, k).values()), timeout=120)


def refusals_in_log(records: list[logging.LogRecord]) -> list[str]:
    formatter = logging.Formatter("%(levelname)s %(name)s: %(message)s")
    return [line[:500] for line in map(formatter.format, records) if REFUSAL_IN_LOG.search(line)]


@pytest.mark.timeout(480)
@pytest.mark.parametrize("which", ["namespaced", "cluster-wide"])
async def test_operator_under_the_charts_service_account_is_never_refused(
    kube: Kube, namespaces: Namespaces, request: pytest.FixtureRequest, which: str, local: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    installed: Installed = request.getfixturevalue("namespaced_release" if which == "namespaced" else "cluster_release")
    watched = installed.watched[0] if installed.watched else await asyncio.to_thread(namespaces.create)
    as_operator, login = service_account_client(kube, installed)
    scenario = Scenario(kube, watched)
    caplog.set_level(logging.DEBUG)

    if local:
        await asyncio.to_thread(wait_until_quiet, kube)
        before = await asyncio.to_thread(kube.refusals)
    async with running_operator(watched, api=as_operator, login=login) as runtime:
        await model_deployment_life(scenario, pods_run=local)
        await cascade_with_cache_life(scenario, pods_run=local)
        await delete_everything(scenario)
        writes = dict(runtime.kube.writes.counts)
    if local:
        after = await asyncio.to_thread(kube.refusals)
    logged = refusals_in_log(caplog.records)

    assert writes.get("PATCH", 0) > 0 and writes.get("DELETE", 0) > 0, writes
    problems = [f"the operator's log: {line}" for line in logged]
    if local:
        moved = {k: after.get(k, 0) - before.get(k, 0) for k in after if after.get(k, 0) != before.get(k, 0)}
        if total(after) != total(before):
            problems.append(f"the API server's refusal counters moved: {moved}")
            # Who was refused, where a controller left a trace (e.g. a ReplicaSet's FailedCreate).
            problems += [f"event {e.involved_object.kind}/{e.involved_object.name} {e.reason}: {e.message}"
                         for e in await asyncio.to_thread(lambda: kube.core.list_namespaced_event(watched).items)
                         if "forbidden" in (e.message or "").lower()]
    assert problems == [], "requests were refused under the chart's RBAC:\n" + "\n".join(problems)
    if local:
        # The meter reads what it should: one request the chart does not grant moves it by exactly one.
        with pytest.raises(ApiException) as refused:
            await asyncio.to_thread(kubernetes.client.CoreV1Api(as_operator).list_namespaced_secret, watched)
        assert refused.value.status == 403
        await eventually(lambda: total(kube.refusals()) == total(after) + 1, timeout=10)


@pytest.mark.parametrize("which", ["namespaced", "cluster-wide"])
def test_chart_grants_nothing_on_secrets(kube: Kube, request: pytest.FixtureRequest, which: str) -> None:
    installed: Installed = request.getfixturevalue("namespaced_release" if which == "namespaced" else "cluster_release")
    other: Installed = request.getfixturevalue("cluster_release" if which == "namespaced" else "namespaced_release")
    scopes = [*installed.watched, None, installed.namespace, *other.watched]
    granted_scope = installed.watched[0] if installed.watched else None
    # The reviews really ask about this ServiceAccount: what the chart grants, the authorizer allows.
    assert kube.allowed(installed.user, "list", "modeldeployments", group=GROUP, namespace=granted_scope)

    granted = [(ns or "<cluster>", verb) for ns in scopes for verb in ALL_VERBS
               if kube.allowed(installed.user, verb, "secrets", namespace=ns)]
    assert granted == [], f"Secrets are readable or writable through the chart's roles: {granted}"

    # And as the ServiceAccount itself asks.
    as_operator, _ = service_account_client(kube, installed)
    review = kubernetes.client.AuthorizationV1Api(as_operator).create_self_subject_access_review({"spec": {
        "resourceAttributes": {"verb": "get", "resource": "secrets", "namespace": granted_scope or ""}}})
    assert review.status.allowed is False
