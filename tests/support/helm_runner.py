"""Run helm-sdkpy actions in this process and print their results as JSON: `python -m tests.support.helm_runner`.

The parent (tests.support.helm_chart) starts this in a child process because the Go library inside helm-sdkpy
reads its environment once, from the process's start-up block: HELM_DRIVER (memory for the emulator, secret for a
real cluster) has to be there from the beginning, and Python cannot change it afterwards. With the memory driver,
release records live in this process, so an install and the upgrade that follows it are steps of one run; with
the secret driver they live in the cluster, and each run is one `helm` command.

stdin:  {"chart": PATH, "release": NAME, "namespace": NS, "kubeconfig": PATH | null,
         "steps": [{"action": "lint" | "install" | "upgrade" | "uninstall", "values": {...},
                    "options": {...}}, ...]}
        `options` go to helm-sdkpy's run() as keyword arguments (e.g. create_namespace, wait, timeout);
        install and upgrade default to wait=False, timeout=60.
stdout: {"ok": true, "results": [...]} or {"ok": false, "results": [...done...], "error": "...", "kind": "..."}
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import helm_sdkpy


async def _step(config: helm_sdkpy.Configuration, request: dict[str, Any], step: dict[str, Any]) -> Any:
    action, chart, release = step["action"], request["chart"], request["release"]
    values = step.get("values") or {}
    options = {"wait": False, "timeout": 60, **(step.get("options") or {})}
    if action == "lint":
        return await helm_sdkpy.Lint(config).run(chart)
    if action == "install":
        return await helm_sdkpy.Install(config).run(release, chart, values=values, **options)
    if action == "upgrade":
        return await helm_sdkpy.Upgrade(config).run(release, chart, values=values, **options)
    if action == "uninstall":
        return await helm_sdkpy.Uninstall(config).run(release, **options)
    raise ValueError(f"unknown action {action!r}: expected lint, install, upgrade or uninstall")


async def _run(request: dict[str, Any]) -> dict[str, Any]:
    results: list[Any] = []
    try:
        config = helm_sdkpy.Configuration(namespace=request["namespace"], kubeconfig=request.get("kubeconfig"))
        for step in request["steps"]:
            results.append(await _step(config, request, step))
    except (helm_sdkpy.HelmError, ValueError) as exc:
        return {"ok": False, "results": results, "error": str(exc), "kind": type(exc).__name__}
    return {"ok": True, "results": results}


def main() -> None:
    json.dump(asyncio.run(_run(json.load(sys.stdin))), sys.stdout)


if __name__ == "__main__":
    main()
