"""The committed CRDs are exactly what the API models generate (the `verify` step of the API types).

Covers: every generated CRD exists, byte for byte, in `crds/` and in the chart's `helm/neuroscale/crds/`; neither
directory holds a stale generated file (a kind removed from the registry, or a file carrying the generator's header
that the generator no longer writes); the comparison itself notices an edited file; `neuroscale crds` prints each
CRD once, as one YAML stream for `kubectl apply`.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import pytest
import yaml

from neuroscale.api.cli import DEFAULT_TARGETS, HEADER, rendered
from neuroscale.api.registry import KINDS

ROOT = Path(__file__).resolve().parents[2]
FIX = "run `neuroscale crds --write` and commit the result"


def generated_files(directory: Path) -> dict[str, str]:
    """Files in `directory` the generator owns: its naming pattern, or its header."""
    return {
        path.name: path.read_text()
        for path in sorted(directory.glob("*.yaml"))
        if path.name.endswith(".neuroscale.io.yaml") or path.read_text().startswith(HEADER)
    }


def differences(expected: dict[str, str], actual: dict[str, str], where: str) -> list[str]:
    problems = []
    for name, text in expected.items():
        if name not in actual:
            problems.append(f"{where}/{name} is missing")
        elif actual[name] != text:
            diff = difflib.unified_diff(
                actual[name].splitlines(), text.splitlines(), f"{where}/{name} (committed)", f"{name} (generated)",
                lineterm="", n=1,
            )
            problems.append("\n".join(list(diff)[:40]))
    problems += [f"{where}/{name} is stale (no kind generates it)" for name in sorted(set(actual) - set(expected))]
    return problems


def test_generator_covers_every_kind() -> None:
    assert set(rendered()) == {"modeldeployments.neuroscale.io.yaml", "inferencecascades.neuroscale.io.yaml",
                               "cachetiers.neuroscale.io.yaml"}


@pytest.mark.parametrize("target", DEFAULT_TARGETS)
def test_committed_crds_match_the_models(target: str) -> None:
    problems = differences(rendered(), generated_files(ROOT / target), target)
    assert not problems, f"{target} is out of date with operator/neuroscale/api; {FIX}:\n" + "\n".join(problems)


def test_comparison_notices_edits_and_stale_files(tmp_path: Path) -> None:
    expected = rendered()
    for name, text in expected.items():
        (tmp_path / name).write_text(text)
    assert differences(expected, generated_files(tmp_path), "copy") == []

    first = sorted(expected)[0]
    (tmp_path / first).write_text(expected[first].replace("description:", "description: edited", 1))
    (tmp_path / "widgets.neuroscale.io.yaml").write_text(HEADER + "kind: CustomResourceDefinition\n")
    problems = differences(expected, generated_files(tmp_path), "copy")
    assert len(problems) == 2
    assert "edited" in problems[0] and problems[1] == "copy/widgets.neuroscale.io.yaml is stale (no kind generates it)"


def test_crds_command_prints_each_crd_once_for_kubectl_apply(capsys):
    from neuroscale.cli import main

    assert main(["crds"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["metadata"]["name"] for d in docs] == [kind.name for kind in KINDS]
