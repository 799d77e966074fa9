"""The real Helm library (helm-sdkpy) run on the neuroscale chart: lint, render ("helm template"), install, upgrade.

helm-sdkpy exposes install/upgrade/lint but no client-only template action, so rendering is a real install into
a fresh kmock emulator on loopback: Helm loads the chart, validates the values against values.schema.json,
renders, sends the objects, and returns the release with its manifest, hooks and notes.

Helm runs in a child process (tests.support.helm_runner) with HELM_DRIVER=memory: its default driver stores
releases in Secrets sent as protobuf, which the JSON-only emulator cannot read, and the Go library only reads
the environment its process started with. Helm's caches go to a private temporary directory.

`on_cluster(action, ...)` is the real-server mode (the e2e tier): one `helm install|upgrade|uninstall` against
the cluster a kubeconfig names, with Helm's default Secret driver, so each call is a separate `helm` command that
finds the release where the previous one stored it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from tests.support.kube_emulator import ExtraResource, running_emulator, stored_objects, write_kubeconfig

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "helm" / "neuroscale"
RELEASE_NAME = "neuroscale"
RELEASE_NAMESPACE = "neuroscale-system"
_HELM_TIMEOUT_S = 120


class HelmFailed(RuntimeError):
    """Helm refused or failed; the message is Helm's own."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Release:
    """What one real `helm install` or `helm upgrade` produced."""

    manifests: list[dict[str, Any]]
    hooks: list[dict[str, Any]]
    notes: str
    stored: list[dict[str, Any]] = field(default_factory=list)
    revision: int = 0  # Helm's release version: 1 after install, +1 per upgrade
    status: str = ""  # "deployed", ...

    @property
    def objects(self) -> list[dict[str, Any]]:
        """Templates and hooks: everything the chart renders besides crds/."""
        return self.manifests + self.hooks


def parse_manifests(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def chart_crds(chart_dir: Path = CHART_DIR) -> list[dict[str, Any]]:
    return [doc for path in sorted((chart_dir / "crds").glob("*.yaml")) for doc in parse_manifests(path.read_text())]


def _helm_environment(home: Path, driver: str = "memory") -> dict[str, str]:
    env = dict(os.environ)
    env["HELM_DRIVER"] = driver
    for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME", "KUBECACHEDIR"):
        env[var] = str(home / var.lower())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH", "")]))
    return env


async def run_helm(
    steps: list[dict[str, Any]],
    *,
    kubeconfig: Path | None,
    namespace: str = RELEASE_NAMESPACE,
    release: str = RELEASE_NAME,
    chart_dir: Path = CHART_DIR,
    driver: str = "memory",
) -> list[Any]:
    """Run helm actions in order in one child process; their results, or HelmFailed at the first failure.

    `driver` is where Helm keeps release records: "memory" (this process only; the emulator) or "secret" (Secrets
    in the release namespace, Helm's default; a real cluster).
    """
    request = {
        "chart": str(chart_dir),
        "release": release,
        "namespace": namespace,
        "kubeconfig": str(kubeconfig) if kubeconfig else None,
        "steps": steps,
    }
    with tempfile.TemporaryDirectory(prefix="neuroscale-helm-home-") as home:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.support.helm_runner",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=_helm_environment(Path(home), driver), cwd=str(REPO_ROOT),
        )
        try:
            stdout, stderr = await asyncio.wait_for(child.communicate(json.dumps(request).encode()), _HELM_TIMEOUT_S)
        except asyncio.TimeoutError:
            child.kill()
            await child.wait()
            raise HelmFailed("Timeout", f"helm did not finish within {_HELM_TIMEOUT_S} s") from None
    if child.returncode != 0:
        raise HelmFailed("Crash", f"helm runner exited with {child.returncode}: {stderr.decode()[-2000:]}")
    reply = json.loads(stdout)
    if not reply["ok"]:
        raise HelmFailed(reply["kind"], reply["error"])
    return reply["results"]


def _release(result: dict[str, Any], stored: list[dict[str, Any]]) -> Release:
    return Release(
        manifests=parse_manifests(result.get("manifest", "")),
        hooks=[doc for hook in result.get("hooks") or [] for doc in parse_manifests(hook.get("manifest", ""))],
        notes=(result.get("info") or {}).get("notes", ""),
        stored=stored,
        revision=result.get("version") or 0,
        status=(result.get("info") or {}).get("status", ""),
    )


async def install(
    values: dict[str, Any] | None = None,
    *,
    upgrades: Iterable[dict[str, Any]] = (),
    namespace: str = RELEASE_NAMESPACE,
    extra: Iterable[ExtraResource] = (),
    seed: Iterable[tuple[ExtraResource, dict[str, Any]]] = (),
    chart_dir: Path = CHART_DIR,
) -> list[Release]:
    """Install the chart into a fresh emulator, then upgrade it with each of `upgrades`: one Release per step.

    `extra` kinds are served and `seed` objects exist before Helm starts. `stored` of each Release is what the
    emulator holds once all steps ran. The steps share one Helm process, so they share Helm's view of the
    cluster's API versions (`.Capabilities`) as taken at the first step, unlike separate `helm` commands.
    """
    steps = [{"action": "install", "values": values or {}}]
    steps += [{"action": "upgrade", "values": upgrade} for upgrade in upgrades]
    async with running_emulator(extra, seed) as (emulator, url):
        with tempfile.TemporaryDirectory(prefix="neuroscale-kubeconfig-") as tmp:
            kubeconfig = write_kubeconfig(url, Path(tmp) / "config", namespace)
            results = await run_helm(steps, kubeconfig=kubeconfig, namespace=namespace, chart_dir=chart_dir)
        stored = stored_objects(emulator)
    return [_release(result, stored) for result in results]


async def on_cluster(
    action: str,
    values: dict[str, Any] | None = None,
    *,
    kubeconfig: Path | None,
    release: str = RELEASE_NAME,
    namespace: str = RELEASE_NAMESPACE,
    chart_dir: Path = CHART_DIR,
    **options: Any,
) -> Release:
    """One real `helm install|upgrade|uninstall` of the chart against the cluster `kubeconfig` names (None: Helm's
    own default, i.e. $KUBECONFIG, ~/.kube/config or the in-cluster config).

    Release records go to Secrets in `namespace` (Helm's default driver), so every call is its own `helm` command:
    an upgrade finds what the install stored and reads the cluster's API versions (`.Capabilities`) afresh.
    `options` are helm-sdkpy's (create_namespace, wait, timeout, ...). `stored` stays empty: read the cluster.
    """
    step: dict[str, Any] = {"action": action, "options": options}
    if action != "uninstall":
        step["values"] = values or {}
    (result,) = await run_helm([step], kubeconfig=kubeconfig, namespace=namespace, release=release,
                               chart_dir=chart_dir, driver="secret")
    if action == "uninstall":  # {"release": {...}, "info": "These resources were kept due to the resource policy..."}
        result = result.get("release") or {}
    return _release(result, [])


def run_sync(coro: Any) -> Any:
    """Run a coroutine on a private thread and loop: usable from sync tests and from inside a running loop."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


@lru_cache(maxsize=32)
def _render_cached(values_json: str, namespace: str, extra: tuple[ExtraResource, ...]) -> Release:
    (release,) = run_sync(install(json.loads(values_json), namespace=namespace, extra=extra))
    return release


def render(
    values: dict[str, Any] | None = None,
    *,
    namespace: str = RELEASE_NAMESPACE,
    extra: Iterable[ExtraResource] = (),
) -> Release:
    """`helm template` with these values: the chart as Helm renders it (cached per distinct input)."""
    return _render_cached(json.dumps(values or {}, sort_keys=True), namespace, tuple(extra))


def lint(chart_dir: Path = CHART_DIR) -> dict[str, Any]:
    """`helm lint` on the chart: Helm's result with its messages."""
    (result,) = run_sync(run_helm([{"action": "lint"}], kubeconfig=None, chart_dir=chart_dir))
    return result
