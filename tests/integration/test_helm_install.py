"""Real `helm install` / `helm upgrade` of the chart (helm-sdkpy) into the kmock Kubernetes emulator on loopback.

Covers: a default install sends exactly the rendered objects plus the chart's CRDs, each carrying Helm's
ownership metadata, and the CRDs become established; a peered, namespaced install creates one KopfPeering per
namespace after its CRD; on a cluster that already has peering objects the chart leaves them (and their live
leases) alone and creates only the missing ones; an upgrade that drops a watched namespace deletes that
namespace's Role and RoleBinding; bad values fail the install with Helm's schema message.

What the emulator cannot show (no scheduling, no RBAC enforcement, no admission, no garbage collection) is left
to the e2e tier on a real cluster.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.helm_chart import HelmFailed, chart_crds, install
from tests.support.kube_emulator import KOPF_PEERINGS

pytestmark = pytest.mark.timeout(120)


def identity(obj: dict[str, Any]) -> tuple[str, str | None, str]:
    return obj["kind"], obj["metadata"].get("namespace"), obj["metadata"]["name"]


def identities(objects: list[dict[str, Any]]) -> list[tuple[str, str | None, str]]:
    return sorted(identity(obj) for obj in objects)


def peering_values(**overrides: Any) -> dict[str, Any]:
    return {"replicaCount": 2, "watchNamespaces": ["team-a", "team-b"], **overrides}


async def test_default_install_sends_the_rendered_objects_and_the_crds() -> None:
    (release,) = await install()
    expected = identities(release.objects + chart_crds())
    assert identities(release.stored) == expected
    for obj in release.stored:
        if obj["kind"] == "CustomResourceDefinition":
            conditions = {c["type"]: c["status"] for c in obj["status"]["conditions"]}
            assert conditions["Established"] == "True"
        else:
            assert obj["metadata"]["annotations"]["meta.helm.sh/release-name"] == "neuroscale"
            assert obj["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "Helm"
    deployment = next(obj for obj in release.stored if obj["kind"] == "Deployment")
    assert deployment["metadata"]["namespace"] == "neuroscale-system"
    assert "neuroscale-system" in release.notes


async def test_peered_install_creates_a_peering_object_per_watched_namespace() -> None:
    (release,) = await install(peering_values())
    stored = identities(release.stored)
    assert ("CustomResourceDefinition", None, "kopfpeerings.kopf.dev") in stored
    assert [s for s in stored if s[0] == "KopfPeering"] == [
        ("KopfPeering", "team-a", "neuroscale"), ("KopfPeering", "team-b", "neuroscale"),
    ]
    assert [s for s in stored if s[0] in ("Role", "RoleBinding")] == [
        ("Role", "team-a", "neuroscale"), ("Role", "team-b", "neuroscale"),
        ("RoleBinding", "team-a", "neuroscale"), ("RoleBinding", "team-b", "neuroscale"),
    ]


async def test_existing_peering_objects_are_left_alone_and_missing_ones_created() -> None:
    # A cluster that already serves kopf's peering kinds and holds team-a's peering object with a live lease,
    # as after an earlier release. (Steps of one Helm process share the API versions Helm saw first, so a
    # second release is simulated by a seeded cluster rather than an upgrade step.)
    namespaced_peering = KOPF_PEERINGS[1]
    live = {
        "apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
        "metadata": {"name": "neuroscale", "namespace": "team-a"},
        "status": {"pod-1": {"priority": 1234, "lifetime": 60}},
    }
    (release,) = await install(peering_values(replicaCount=3), extra=KOPF_PEERINGS, seed=[(namespaced_peering, live)])
    assert [identity(hook) for hook in release.hooks] == [("KopfPeering", "team-b", "neuroscale")]
    kept = next(obj for obj in release.stored if identity(obj) == ("KopfPeering", "team-a", "neuroscale"))
    assert kept["status"] == {"pod-1": {"priority": 1234, "lifetime": 60}}
    assert ("KopfPeering", "team-b", "neuroscale") in identities(release.stored)


async def test_upgrade_that_drops_a_namespace_removes_its_rights() -> None:
    _, upgraded = await install(
        peering_values(watchNamespaces=["team-a", "team-b"]),
        upgrades=[peering_values(watchNamespaces=["team-b"])],
    )
    rights = [s for s in identities(upgraded.stored) if s[0] in ("Role", "RoleBinding")]
    assert rights == [("Role", "team-b", "neuroscale"), ("RoleBinding", "team-b", "neuroscale")]
    deployment = next(obj for obj in upgraded.stored if obj["kind"] == "Deployment")
    assert "--namespace=team-a" not in deployment["spec"]["template"]["spec"]["containers"][0]["args"]


async def test_bad_values_fail_the_install_with_the_schema_message() -> None:
    with pytest.raises(HelmFailed, match="replicaCount") as failure:
        await install({"replicaCount": "many"})
    assert failure.value.kind == "InstallError"
