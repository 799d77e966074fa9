"""Real-cluster tier: a real Kubernetes control plane built from source and started here, or any cluster
`KUBECONFIG` names; CRDs, a throwaway namespace per test, the operator in-process.

Without `NEUROSCALE_E2E=1` the suite starts its own control plane on loopback (tests/support/controlplane.py:
etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok with fake Neuron nodes), from the binaries
`scripts/build-control-plane.sh` builds once. With `NEUROSCALE_E2E=1` it uses the cluster of the current kubeconfig
context instead and skips, with the reason, when that cluster does not answer.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.cluster import throwaway_namespace, wait_for

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"
E2E_DIR = Path(__file__).resolve().parent


def external_cluster() -> bool:
    return os.environ.get("NEUROSCALE_E2E") == "1"


def _skip_reason() -> str | None:
    if not external_cluster():
        if shutil.which("go") is None and not os.environ.get("CI"):
            # On CI a missing toolchain must fail the run, not skip the tier.
            return ("the real-control-plane tier builds Kubernetes from source and needs the Go toolchain "
                    "(or NEUROSCALE_E2E=1 with a KUBECONFIG); see tests/e2e/README.md")
        return None
    import kubernetes

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        try:
            kubernetes.config.load_kube_config()
        except (kubernetes.config.ConfigException, OSError) as exc:
            return f"NEUROSCALE_E2E=1 but no usable kubeconfig or in-cluster config: {exc}"
    try:
        kubernetes.client.VersionApi().get_code(_request_timeout=10)
    except Exception as exc:  # any failure to reach the API server is a reason to skip, stated as such
        detail = f"HTTP {exc.status} {exc.reason}" if isinstance(exc, kubernetes.client.ApiException) else str(exc)
        return f"NEUROSCALE_E2E=1 but the cluster in the current kubeconfig context did not answer: {detail[:300]}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    ours = [item for item in items if E2E_DIR in Path(str(item.fspath)).resolve().parents]
    if not ours:
        return
    reason = _skip_reason()
    for item in ours:
        item.add_marker(pytest.mark.e2e)
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The local control plane (None against an external cluster); its kubeconfig becomes the current one."""
    if external_cluster():
        yield None
        return
    from tests.support.controlplane import control_plane as start

    previous = os.environ.get("KUBECONFIG")
    with start(tmp_path_factory.mktemp("control-plane")) as plane:
        os.environ["KUBECONFIG"] = str(plane.kubeconfig)
        try:
            yield plane
        finally:
            if previous is None:
                os.environ.pop("KUBECONFIG", None)
            else:
                os.environ["KUBECONFIG"] = previous


@pytest.fixture(scope="session")
def api(control_plane: Any) -> Any:
    """An ApiClient for the cluster under test (in-cluster credentials, else the current kubeconfig context)."""
    from neuroscale.k8s.client import load_config

    return load_config()


@pytest.fixture(scope="session")
def crds(api: Any) -> list[dict[str, Any]]:
    """Our CRDs from crds/, created or replaced, and Established. Left installed: other releases may use them."""
    import kubernetes
    import yaml

    extensions = kubernetes.client.ApiextensionsV1Api(api)
    applied = []
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        name = crd["metadata"]["name"]
        try:
            extensions.create_custom_resource_definition(crd)
        except kubernetes.client.ApiException as exc:
            if exc.status != 409:
                raise
            crd["metadata"]["resourceVersion"] = extensions.read_custom_resource_definition(name).metadata.resource_version
            extensions.replace_custom_resource_definition(name, crd)
        applied.append(crd)
    for crd in applied:
        wait_for(lambda: _established(extensions, crd["metadata"]["name"]), timeout=60,
                 what=f"CRD {crd['metadata']['name']} Established")
    return applied


def _established(extensions: Any, name: str) -> bool:
    conditions = extensions.read_custom_resource_definition(name).status.conditions or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)


@pytest.fixture
def namespace(api: Any, crds: list[dict[str, Any]]) -> Iterator[str]:
    """A fresh namespace for one test, deleted afterwards (with everything in it)."""
    with throwaway_namespace(api) as name:
        yield name
