"""The Helm chart, rendered and linted by the real Helm library (helm-sdkpy).

Covers: `helm lint`; rendering with default values and with watchNamespaces; every rendered object (and the
chart's CRDs) against the Kubernetes OpenAPI schemas (kubernetes-validate), kopf peering objects against the
chart's own peering CRD schema; crds/ in the chart byte-identical to crds/ at the repo root; values.schema.json
on good and bad values, with jsonschema and through Helm itself; secure pod defaults; least-privilege RBAC (no
wildcards, no Secrets, exactly the operator's calls, ClusterRole vs per-namespace Roles); kopf peering switched
on by replicaCount > 1 with no --priority passed; image tag, Prometheus and ServiceAccount values; the
rules_allow helper itself.

Rendering is a real `helm install` into a kmock emulator on loopback (helm-sdkpy has no template action); see
tests/support/helm_chart.py.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.support.helm_chart import CHART_DIR, REPO_ROOT, HelmFailed, chart_crds, lint, render
from tests.support.kube_emulator import KOPF_PEERINGS, SERVICE_MONITOR
from tests.support.rbac import rendered_rules, roles, rules_allow

KUBERNETES_VERSION = "1.30"
OPERATOR_GROUPS_WITHOUT_OPENAPI = {"kopf.dev", "monitoring.coreos.com"}


def chart_values(**overrides: Any) -> dict[str, Any]:
    """Chart values for a test: only what the test sets, the chart supplies the rest."""
    return dict(overrides)


def default_values() -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text())


def values_schema() -> dict[str, Any]:
    return json.loads((CHART_DIR / "values.schema.json").read_text())


def objects_of(kind: str, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj["kind"] == kind]


def one(kind: str, objects: list[dict[str, Any]]) -> dict[str, Any]:
    found = objects_of(kind, objects)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (container,) = one("Deployment", objects)["spec"]["template"]["spec"]["containers"]
    return container


def group_of(obj: dict[str, Any]) -> str:
    api_version = obj["apiVersion"]
    return api_version.split("/")[0] if "/" in api_version else ""


# --- lint and rendering -------------------------------------------------------------------------------------------


def test_helm_lint_reports_no_warnings_or_errors() -> None:
    result = lint()
    assert result["TotalChartsLinted"] == 1
    serious = [m for m in result["Messages"] or [] if m["Severity"] >= 2]  # 2 = warning, 3 = error
    assert serious == [] and not result["Errors"]


def test_default_values_render_cluster_wide_operator() -> None:
    objects = render().objects
    assert sorted(obj["kind"] for obj in objects) == [
        "ClusterRole", "ClusterRoleBinding", "Deployment", "Service", "ServiceAccount",
    ]
    args = operator_container(objects)["args"]
    assert args[0] == "run" and "--all-namespaces" in args
    assert not any(arg.startswith("--namespace") for arg in args)
    binding = one("ClusterRoleBinding", objects)
    assert binding["roleRef"]["name"] == one("ClusterRole", objects)["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "neuroscale", "namespace": "neuroscale-system"}]


def test_gateways_run_the_operators_own_image_unless_told_otherwise() -> None:
    container = operator_container(render(chart_values(image={"repository": "registry.example/ns", "tag": "1.2"})).objects)
    assert "--gateway-image=registry.example/ns:1.2" in container["args"]
    assert container["image"] == "registry.example/ns:1.2"
    other = operator_container(render(chart_values(gatewayImage="registry.example/ns:1.2-semantic")).objects)
    assert "--gateway-image=registry.example/ns:1.2-semantic" in other["args"]


def test_watch_namespaces_render_one_role_and_binding_per_namespace_and_no_cluster_rights() -> None:
    objects = render(chart_values(watchNamespaces=["team-a", "team-b"])).objects
    assert not objects_of("ClusterRole", objects) and not objects_of("ClusterRoleBinding", objects)
    assert sorted(r["metadata"]["namespace"] for r in objects_of("Role", objects)) == ["team-a", "team-b"]
    for binding in objects_of("RoleBinding", objects):
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "neuroscale"}
        assert binding["subjects"][0]["namespace"] == "neuroscale-system"
    args = operator_container(objects)["args"]
    assert "--namespace=team-a" in args and "--namespace=team-b" in args and "--all-namespaces" not in args


VALUE_SETS = {
    "defaults": chart_values(),
    "namespaced-peered": chart_values(replicaCount=2, watchNamespaces=["team-a", "team-b"]),
    "cluster-peered-full": chart_values(
        replicaCount=3,
        prometheus={"url": "http://prometheus.monitoring:9090", "bearerTokenFile": "/var/run/token", "sigv4Region": "us-east-2"},
        serviceAccount={"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/neuroscale"}},
        metrics={"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
        extraEnv=[{"name": "AWS_REGION", "value": "us-east-2"}],
        nodeSelector={"kubernetes.io/os": "linux"},
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "system", "effect": "NoSchedule"}],
        imagePullSecrets=[{"name": "registry-credentials"}],
        priorityClassName="system-cluster-critical",
    ),
}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rendered_object_passes_kubernetes_schema_validation(name: str) -> None:
    release = render(VALUE_SETS[name], extra=[SERVICE_MONITOR])
    peering_crds = {crd["spec"]["names"]["kind"]: crd for crd in objects_of("CustomResourceDefinition", release.objects)}
    for obj in release.objects + chart_crds():
        if group_of(obj) in OPERATOR_GROUPS_WITHOUT_OPENAPI:
            with pytest.raises(kubernetes_validate.SchemaNotFoundError):
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        else:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        if group_of(obj) == "kopf.dev":
            schema = peering_crds[obj["kind"]]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
            jsonschema.validate(obj, schema)


def test_kubernetes_validation_catches_a_misspelt_field() -> None:
    deployment = json.loads(json.dumps(one("Deployment", render().objects)))
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError, match="imagePullPolice"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# --- CRDs ---------------------------------------------------------------------------------------------------------


def test_chart_crds_are_byte_identical_to_the_generated_crds() -> None:
    generated = {path.name: path.read_bytes() for path in (REPO_ROOT / "crds").glob("*.yaml")}
    in_chart = {path.name: path.read_bytes() for path in (CHART_DIR / "crds").glob("*.yaml")}
    assert generated, "crds/ is empty: run `neuroscale crds --write`"
    assert "modeldeployments.neuroscale.io.yaml" in generated
    assert sorted(in_chart) == sorted(generated), "run `neuroscale crds --write` to refresh the chart's copy"
    drifted = [name for name in generated if in_chart[name] != generated[name]]
    assert drifted == [], f"chart CRDs differ from crds/: {drifted}; run `neuroscale crds --write`"


# --- values.schema.json -------------------------------------------------------------------------------------------


def test_values_yaml_satisfies_its_schema() -> None:
    jsonschema.Draft7Validator.check_schema(values_schema())
    jsonschema.validate(default_values(), values_schema())


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_example_values_satisfy_the_schema(name: str) -> None:
    jsonschema.validate(VALUE_SETS[name], values_schema())


BAD_VALUES = {
    "unknown top-level key": (chart_values(replicas=2), "replicas"),
    "replicaCount as a string": (chart_values(replicaCount="2"), "'2' is not of type 'integer'"),
    "negative replicaCount": (chart_values(replicaCount=-1), "minimum"),
    "log format": (chart_values(logFormat="xml"), "'xml' is not one of"),
    "unknown image key": (chart_values(image={"repository": "x", "digest": "sha256:0"}), "digest"),
    "pull policy": (chart_values(image={"repository": "x", "pullPolicy": "Sometimes"}), "Sometimes"),
    "namespace not a DNS label": (chart_values(watchNamespaces=["Team_A"]), "Team_A"),
    "watchNamespaces as a string": (chart_values(watchNamespaces="team-a"), "not of type 'array'"),
    "prometheus url scheme": (chart_values(prometheus={"url": "prometheus:9090"}), "prometheus:9090"),
    "sigv4 region": (chart_values(prometheus={"sigv4Region": "mars"}), "mars"),
    "port out of range": (chart_values(metrics={"port": 70000}), "70000"),
    "peering flag type": (chart_values(peering={"enabled": "yes"}), "'yes' is not of type 'boolean'"),
    "annotation value type": (chart_values(serviceAccount={"annotations": {"a": 1}}), "1 is not of type 'string'"),
}


@pytest.mark.parametrize("name", sorted(BAD_VALUES))
def test_schema_rejects_bad_values(name: str) -> None:
    values, message = BAD_VALUES[name]
    with pytest.raises(jsonschema.ValidationError, match=message):
        jsonschema.validate(values, values_schema())


@pytest.mark.parametrize("name", ["unknown top-level key", "replicaCount as a string", "log format"])
def test_helm_itself_refuses_bad_values_with_a_message_naming_the_problem(name: str) -> None:
    values, _ = BAD_VALUES[name]
    bad_key = next(iter(values))
    with pytest.raises(HelmFailed, match="values don't meet the specifications of the schema") as failure:
        render(values)
    assert bad_key in failure.value.message


# --- pod security -------------------------------------------------------------------------------------------------


def test_pod_runs_non_root_read_only_with_no_capabilities() -> None:
    objects = render().objects
    pod = one("Deployment", objects)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 65532
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    container = operator_container(objects)
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsUser"] == 65532 and security["runAsNonRoot"] is True
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert mounts["tmp"] == "/tmp" and "emptyDir" in volumes["tmp"]


def test_probes_and_ports_match_the_operator_flags() -> None:
    container = operator_container(render(chart_values(metrics={"port": 9100}, health={"port": 8181})).objects)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 9100, "health": 8181}
    assert "--metrics-port=9100" in container["args"] and "--health-port=8181" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}


# --- RBAC ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [chart_values(), chart_values(watchNamespaces=["team-a"])], ids=["cluster", "namespaced"])
def test_rbac_has_no_wildcards_and_never_touches_secrets(values: dict[str, Any]) -> None:
    rules = rendered_rules(values)
    assert rules
    for rule in rules:
        for key in ("apiGroups", "resources", "verbs"):
            assert not any("*" in item for item in rule[key]), rule
        assert not any(res.split("/")[0] == "secrets" for res in rule["resources"]), rule
        assert "nonResourceURLs" not in rule and "resourceNames" not in rule
    for verb in ("get", "list", "watch", "create", "patch", "delete"):
        assert not rules_allow(rules, "", "secrets", verb)


GRANTED = [
    ("neuroscale.io", "modeldeployments", "watch", None),
    ("neuroscale.io", "inferencecascades", "list", None),
    ("neuroscale.io", "cachetiers", "patch", None),
    ("neuroscale.io", "modeldeployments", "patch", "status"),
    ("", "pods", "list", None),  # cold starts are measured from the model pods
    ("neuroscale.io", "cachetiers", "patch", "status"),
    ("apps", "deployments", "list", None),
    ("apps", "deployments", "delete", None),
    ("", "services", "patch", None),
    ("", "services", "watch", None),
    ("policy", "poddisruptionbudgets", "list", None),
    ("", "configmaps", "delete", None),
    ("", "serviceaccounts", "create", None),
    ("policy", "poddisruptionbudgets", "patch", None),
    ("networking.k8s.io", "networkpolicies", "create", None),
    ("", "events", "create", None),
    ("events.k8s.io", "events", "patch", None),
    # The Role a routing gateway gets, and the verbs it grants (RBAC: only what the operator holds itself).
    ("rbac.authorization.k8s.io", "roles", "create", None),
    ("rbac.authorization.k8s.io", "rolebindings", "create", None),
    ("rbac.authorization.k8s.io", "rolebindings", "delete", None),
    ("discovery.k8s.io", "endpointslices", "watch", None),
]
DENIED = [
    ("neuroscale.io", "modeldeployments", "delete", None),
    ("neuroscale.io", "modeldeployments", "create", None),
    ("neuroscale.io", "modeldeployments", "update", None),
    ("neuroscale.io", "modeldeployments", "patch", "scale"),
    ("apps", "deployments", "update", None),
    ("apps", "daemonsets", "create", None),
    ("apps", "statefulsets", "create", None),  # no kind renders one
    ("", "pods", "delete", None),
    ("", "pods", "get", None),
    ("", "pods", "patch", None),
    ("", "events", "delete", None),
    ("rbac.authorization.k8s.io", "roles", "escalate", None),
    ("rbac.authorization.k8s.io", "roles", "bind", None),
    ("rbac.authorization.k8s.io", "clusterroles", "create", None),
    ("rbac.authorization.k8s.io", "clusterrolebindings", "create", None),
    ("discovery.k8s.io", "endpointslices", "create", None),
    ("apiextensions.k8s.io", "customresourcedefinitions", "create", None),
    ("", "namespaces", "create", None),
]


@pytest.mark.parametrize("values", [chart_values(), chart_values(watchNamespaces=["team-a"])], ids=["cluster", "namespaced"])
def test_rbac_grants_exactly_what_the_operator_calls(values: dict[str, Any]) -> None:
    rules = rendered_rules(values)
    for grant in GRANTED:
        assert rules_allow(rules, *grant), grant
    for denial in DENIED:
        assert not rules_allow(rules, *denial), denial


def test_peering_rights_follow_the_scope() -> None:
    cluster = rendered_rules(chart_values())
    namespaced = rendered_rules(chart_values(watchNamespaces=["team-a"]))
    for verb in ("get", "list", "watch", "patch"):
        assert rules_allow(cluster, "kopf.dev", "clusterkopfpeerings", verb)
        assert rules_allow(namespaced, "kopf.dev", "kopfpeerings", verb)
    assert not rules_allow(cluster, "kopf.dev", "kopfpeerings", "patch")
    assert not rules_allow(namespaced, "kopf.dev", "clusterkopfpeerings", "patch")
    assert not rules_allow(cluster, "kopf.dev", "clusterkopfpeerings", "delete")


def test_rules_allow_follows_rbac_semantics() -> None:
    rules = [
        {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
        {"apiGroups": ["x.io"], "resources": ["*"], "verbs": ["list"]},
        {"apiGroups": ["*"], "resources": ["widgets/status"], "verbs": ["*"]},
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["delete"], "resourceNames": ["one"]},
    ]
    assert rules_allow(rules, "apps", "deployments", "get")
    assert not rules_allow(rules, "apps", "deployments", "patch")
    assert not rules_allow(rules, "", "deployments", "get")
    assert not rules_allow(rules, "apps", "deployments", "get", "scale")
    assert rules_allow(rules, "x.io", "anything", "list")
    assert rules_allow(rules, "any.group", "widgets", "patch", "status")
    assert not rules_allow(rules, "any.group", "widgets", "patch")
    assert not rules_allow(rules, "", "configmaps", "delete")


# --- peering ------------------------------------------------------------------------------------------------------


def test_single_replica_runs_without_peering_and_never_overlaps_on_rollout() -> None:
    objects = render().objects
    deployment = one("Deployment", objects)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not any(arg.startswith("--peering") for arg in operator_container(objects)["args"])
    assert not [obj for obj in objects if group_of(obj) == "kopf.dev" or obj["kind"] == "CustomResourceDefinition"]


def test_several_replicas_peer_with_random_distinct_priorities() -> None:
    release = render(chart_values(replicaCount=3))
    args = operator_container(release.objects)["args"]
    assert "--peering=neuroscale" in args
    assert not any(arg.startswith("--priority") for arg in args), "equal priorities would freeze every pod"
    assert one("Deployment", release.objects)["spec"]["strategy"]["type"] == "RollingUpdate"
    (peering,) = release.hooks
    assert (peering["kind"], peering["metadata"]["name"]) == ("ClusterKopfPeering", "neuroscale")
    assert peering["metadata"]["annotations"]["helm.sh/hook"] == "post-install,post-upgrade"
    crds = {crd["metadata"]["name"]: crd for crd in objects_of("CustomResourceDefinition", release.manifests)}
    assert sorted(crds) == ["clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"]
    assert all(crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep" for crd in crds.values())
    assert crds["kopfpeerings.kopf.dev"]["spec"]["scope"] == "Namespaced"


def test_namespaced_peering_puts_one_peering_object_in_each_watched_namespace() -> None:
    release = render(chart_values(peering={"enabled": True, "name": "ns-peers"}, watchNamespaces=["team-a", "team-b"]))
    assert sorted((h["kind"], h["metadata"]["namespace"], h["metadata"]["name"]) for h in release.hooks) == [
        ("KopfPeering", "team-a", "ns-peers"), ("KopfPeering", "team-b", "ns-peers"),
    ]
    assert "--peering=ns-peers" in operator_container(release.objects)["args"]


def test_peering_crds_can_be_left_to_another_operator() -> None:
    release = render(chart_values(replicaCount=2, peering={"installCRDs": False}), extra=KOPF_PEERINGS)
    assert not objects_of("CustomResourceDefinition", release.objects)
    assert [hook["kind"] for hook in release.hooks] == ["ClusterKopfPeering"]


# --- other values -------------------------------------------------------------------------------------------------


def test_image_tag_defaults_to_app_version_and_can_be_pinned() -> None:
    app_version = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["appVersion"]
    assert operator_container(render().objects)["image"] == f"neuroscale/neuroscale:{app_version}"
    pinned = render(chart_values(image={"repository": "example.test/ns/neuroscale", "tag": "1.2.3", "pullPolicy": "Always"}))
    container = operator_container(pinned.objects)
    assert container["image"] == "example.test/ns/neuroscale:1.2.3" and container["imagePullPolicy"] == "Always"


def test_prometheus_flags_appear_only_when_set() -> None:
    bare = operator_container(render().objects)["args"]
    assert not any(arg.startswith("--prometheus") for arg in bare)
    full = operator_container(render(VALUE_SETS["cluster-peered-full"], extra=[SERVICE_MONITOR]).objects)["args"]
    assert "--prometheus-url=http://prometheus.monitoring:9090" in full
    assert "--prometheus-bearer-token-file=/var/run/token" in full
    assert "--prometheus-sigv4-region=us-east-2" in full
    assert "--log-format=json" in full


def test_service_account_carries_the_irsa_annotation() -> None:
    objects = render(VALUE_SETS["cluster-peered-full"], extra=[SERVICE_MONITOR]).objects
    account = one("ServiceAccount", objects)
    assert account["metadata"]["annotations"] == {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/neuroscale"}
    assert one("Deployment", objects)["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_existing_service_account_must_be_named() -> None:
    with pytest.raises(HelmFailed, match="serviceAccount.name is required"):
        render(chart_values(serviceAccount={"create": False}))
    objects = render(chart_values(serviceAccount={"create": False, "name": "platform-operator"})).objects
    assert not objects_of("ServiceAccount", objects)
    assert one("ClusterRoleBinding", objects)["subjects"][0]["name"] == "platform-operator"


def test_service_monitor_scrapes_the_metrics_service() -> None:
    objects = render(VALUE_SETS["cluster-peered-full"], extra=[SERVICE_MONITOR]).objects
    monitor, service = one("ServiceMonitor", objects), one("Service", objects)
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_service_monitor_without_the_service_is_refused() -> None:
    with pytest.raises(HelmFailed, match="needs metrics.service.enabled"):
        render(chart_values(metrics={"service": {"enabled": False}, "serviceMonitor": {"enabled": True}}), extra=[SERVICE_MONITOR])


def test_roles_helper_finds_only_role_kinds() -> None:
    found = roles(render(chart_values(watchNamespaces=["team-a"])).objects)
    assert [r["kind"] for r in found] == ["Role"]
