"""A kmock Kubernetes emulator on loopback that Helm and kubectl-style clients can talk to, plus its kubeconfig.

kmock serves JSON objects and discovery. What a real API server does and clients depend on is added here: an
object created with only `metadata.generateName` gets a name (kopf posts Events that way; without it every Event
after the first collides); an accepted CustomResourceDefinition gets `Established`/`NamesAccepted` conditions and
its kind is served by discovery (the apiextensions controller's job); the core group's discovery document names its
groupVersion `v1` (kmock says `/v1`, which client-go's REST mapper does not match); and /openapi/v2 answers
with an empty (valid, protobuf-encoded) document, so clients that validate objects before sending them find no
schema and let every kind through, as for a CRD without one. Schema checks are the tests' job
(kubernetes-validate), not the emulator's. Lists also carry `apiVersion` and `kind` (`ConfigMapList`), which
client-go's dynamic client requires before it decodes them (Helm's readiness watcher lists that way).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kmock
import yaml

CRDS = kmock.resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")


@dataclass(frozen=True)
class ExtraResource:
    """A kind served as if its CRD were already installed (e.g. prometheus-operator's ServiceMonitor)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True


class Emulator(kmock.KubernetesEmulator):
    """kmock's emulator that names objects from `generateName` and types its list responses, as API servers do."""

    async def _handle(self, request: kmock.Request) -> Any:
        data = request.data if request.action == kmock.action.CREATE else None
        if isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = f"{meta['generateName']}{uuid.uuid4().hex[:5]}"
        return await super()._handle(request)

    async def _serve_list(self, request: kmock.Request) -> dict[str, Any]:
        listing = dict(await super()._serve_list(request))
        resource = request.resource
        info = self.resources[resource] if resource in self.resources else None
        kind = info.kind if info is not None and info.kind else (resource.plural or "").capitalize()
        listing["apiVersion"] = f"{resource.group}/{resource.version}" if resource.group else resource.version
        listing["kind"] = f"{kind}List"
        return listing


SERVICE_MONITOR = ExtraResource("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor")
KOPF_PEERINGS = (
    ExtraResource("kopf.dev", "v1", "clusterkopfpeerings", "ClusterKopfPeering", namespaced=False),
    ExtraResource("kopf.dev", "v1", "kopfpeerings", "KopfPeering"),
)

_ALL_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete", "fetch"})


def serve_kind(
    emulator: kmock.KubernetesEmulator,
    *,
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool,
    subresources: Iterable[str] = (),
) -> None:
    emulator.resources[f"{group}/{version}/{plural}"] = kmock.ResourceInfo(
        kind=kind,
        namespaced=namespaced,
        verbs=set(_ALL_VERBS),
        subresources=set(subresources),
    )


def _establish(emulator: kmock.KubernetesEmulator, crd: dict[str, Any]) -> None:
    spec = crd.get("spec", {})
    names = spec.get("names", {})
    for version in spec.get("versions", []):
        if version.get("served"):
            serve_kind(
                emulator,
                group=spec["group"],
                version=version["name"],
                plural=names["plural"],
                kind=names["kind"],
                namespaced=spec.get("scope") == "Namespaced",
                subresources=version.get("subresources", {}).keys(),
            )
    conditions = [
        {"type": kind, "status": "True", "reason": reason, "message": "set by the test emulator"}
        for kind, reason in (("NamesAccepted", "NoConflicts"), ("Established", "InitialNamesAccepted"))
    ]
    emulator.objects[CRDS, None, crd["metadata"]["name"]].patch(
        {"status": {"conditions": conditions, "acceptedNames": names, "storedVersions": [v["name"] for v in spec.get("versions", [])]}}
    )


def _install_reactions(emulator: kmock.KubernetesEmulator, core_discovery: dict[str, Any]) -> None:
    emulator["get /api/v1"] << core_discovery
    emulator["get /openapi/v2"] << b""

    # kmock stores the posted object before reactions run, so this sees it and answers with the updated copy.
    async def establish_on_create(request: kmock.Request) -> dict[str, Any]:
        _establish(emulator, request.data)
        return emulator.objects[CRDS, None, request.data["metadata"]["name"]].raw

    emulator["post", CRDS] << establish_on_create


@contextlib.asynccontextmanager
async def running_emulator(
    extra: Iterable[ExtraResource] = (),
    seed: Iterable[tuple[ExtraResource, dict[str, Any]]] = (),
) -> AsyncIterator[tuple[kmock.KubernetesEmulator, str]]:
    """A started emulator serving the built-in kinds and `extra`, already holding the `seed` objects; its URL."""
    async with Emulator() as emulator, kmock.Server(emulator) as server:
        emulator.resources.load_bundled()
        for res in extra:
            serve_kind(emulator, group=res.group, version=res.version, plural=res.plural, kind=res.kind, namespaced=res.namespaced)
        for res, obj in seed:
            key = kmock.resource(res.group, res.version, res.plural)
            emulator.objects[key, obj["metadata"].get("namespace"), obj["metadata"]["name"]] = obj
        async with server.client.get("/api/v1") as response:
            core_discovery = await response.json()
        core_discovery["groupVersion"] = "v1"
        _install_reactions(emulator, core_discovery)
        yield emulator, str(server.url).rstrip("/")


def write_kubeconfig(server_url: str, path: Path, namespace: str = "default") -> Path:
    """A kubeconfig whose current context points at `server_url` (plain HTTP on loopback, dummy token)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server_url}}],
        "users": [{"name": "tester", "user": {"token": "emulator-accepts-any-token"}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester", "namespace": namespace}}],
        "current-context": "emulator",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def stored_objects(emulator: kmock.KubernetesEmulator) -> list[dict[str, Any]]:
    """Every live object the emulator holds, as plain dicts."""
    return [obj.raw for obj in emulator.objects.values() if not obj.deleted]
