"""Argo CD health checks for neuroscale's kinds: the argocd-cm patch built from the Lua scripts, and a Lua runner
that calls a script the way Argo CD does.

The scripts live in helm/neuroscale/files/argocd-health/<kind>.lua (files/ is shipped with the chart, not rendered).
`argocd-cm-patch.yaml` next to them is generated from them; refresh it with `python -m tests.support.argocd`.

Argo CD runs health scripts in gopher-lua (Lua 5.1) with only the base and table libraries open (no string, math
or io library unless an admin sets `resource.customizations.useOpenLibs`): the global `obj` is the resource, and
the chunk returns a table with `status` and `message`. `run_health` reproduces that with a real Lua 5.1 (lupa):
same dialect, the same globals, and strings without methods, so a script that would fail in Argo CD fails here.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from neuroscale.api.common import GROUP
from neuroscale.api.registry import KINDS

REPO_ROOT = Path(__file__).resolve().parents[2]
HEALTH_DIR = REPO_ROOT / "helm" / "neuroscale" / "files" / "argocd-health"
PATCH_FILE = HEALTH_DIR / "argocd-cm-patch.yaml"
REGENERATE = "python -m tests.support.argocd"

HEALTH_STATUSES = frozenset({"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"})
# Argo CD opens the base library (these are its pure functions) and the table library; nothing else.
BASE_FUNCTIONS = ("assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal", "rawget",
                  "rawset", "select", "setmetatable", "tonumber", "tostring", "type", "unpack", "xpcall")


def health_key(kind: str) -> str:
    """The argocd-cm key Argo CD reads a kind's health check from: resource.customizations.health.<group>_<kind>."""
    return f"resource.customizations.health.{GROUP}_{kind}"


def script_path(kind: str) -> Path:
    return HEALTH_DIR / f"{kind.lower()}.lua"


def scripts() -> dict[str, str]:
    """Every kind's health script, by kind, in registry order."""
    return {kind.kind: script_path(kind.kind).read_text() for kind in KINDS}


def argocd_cm_patch(by_kind: dict[str, str] | None = None) -> str:
    """The argocd-cm patch carrying every health script as a literal block, ready for `kubectl patch`."""
    lines = [
        f"# Generated from the .lua files next to this one by `{REGENERATE}`: edit those, not this.",
        "# Merge into Argo CD's argocd-cm (namespace argocd by default):",
        f"#   kubectl -n argocd patch configmap argocd-cm --patch-file {PATCH_FILE.relative_to(REPO_ROOT)}",
        "apiVersion: v1",
        "kind: ConfigMap",
        "metadata:",
        "  name: argocd-cm",
        "data:",
    ]
    for kind, script in (by_kind if by_kind is not None else scripts()).items():
        lines.append(f"  {health_key(kind)}: |")
        lines += [f"    {line}" if line else "" for line in script.splitlines()]
    return "\n".join(lines) + "\n"


_ARGO_CALL = """
local script, name, obj, base = ...
local env = {obj = obj, table = table}
for _, fn in ipairs(base) do env[fn] = _G[fn] end
getmetatable("").__index = nil  -- without the string library, strings have no methods in gopher-lua
local chunk, problem = loadstring(script, name)
if chunk == nil then error(problem, 0) end
return setfenv(chunk, env)()
"""


def run_health(script: str, obj: dict[str, Any], name: str = "health.lua") -> dict[str, Any]:
    """Run one health script on `obj` (sent through JSON, as the API server stores it) and return its table.

    Raises lupa's LuaError when the script fails, and AssertionError when it returns what Argo CD would not accept
    (no table, or a status outside Argo CD's health statuses, which Argo CD turns into Unknown).
    """
    import lupa.lua51 as lua  # gopher-lua, which Argo CD embeds, speaks Lua 5.1

    runtime = lua.LuaRuntime()
    as_lua = runtime.table_from(json.loads(json.dumps(obj)), recursive=True)
    result = runtime.execute(_ARGO_CALL, script, name, as_lua, runtime.table_from(BASE_FUNCTIONS))
    assert lua.lua_type(result) == "table", f"{name} returned {result!r}, not a table"
    health = dict(result.items())
    assert health.get("status") in HEALTH_STATUSES, f"{name} returned status {health.get('status')!r}"
    return health


def main() -> int:
    PATCH_FILE.write_text(argocd_cm_patch())
    print(f"wrote {PATCH_FILE.relative_to(REPO_ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
