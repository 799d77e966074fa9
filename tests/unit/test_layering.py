"""The package's layering, checked by import-linter against the contracts in `.importlinter`.

Covers: the pure core (api, sizing, render, status, conditions, reasons, the autoscaling policy, PromQL, baselines,
simulator and traces, cache keys and policy, the gateway's escalation rules, protocol, config and translations)
reaches no Kubernetes, AWS, HTTP, Redis or Prometheus client, directly or through another module; controllers do
not import kopf. Also that the contract file names only modules that exist, so a rename cannot silently empty it.
"""

from __future__ import annotations

import configparser
import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contract_modules() -> list[str]:
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    return [
        module
        for section in parser.sections() if section.startswith("importlinter:contract:")
        for module in parser[section]["source_modules"].split()
    ]


def test_contracts_name_existing_modules() -> None:
    missing = [module for module in _contract_modules() if importlib.util.find_spec(module) is None]
    assert _contract_modules(), "no contract lists source modules"
    assert not missing, f".importlinter names modules that do not exist: {missing}"


def test_import_contracts_are_kept() -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--config", str(CONFIG), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, f"lint-imports found broken contracts:\n{result.stdout}\n{result.stderr}"
