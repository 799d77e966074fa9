"""The README stays true: its generated field reference matches the API types, the files and commands it names
exist, and CI runs exactly its test command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from neuroscale.api.reference import update_document
from neuroscale.api.registry import KINDS
from neuroscale.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def shell_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, re.S)


def test_generated_reference_is_current():
    assert update_document(README, KINDS) == README, "run `neuroscale crds --write` to refresh the README reference"
    for kind in KINDS:
        assert f"<!-- generated:{kind.kind}-reference:start -->\n| field |" in README, kind.kind


def test_ci_runs_the_readme_test_command():
    test_commands = [line for block in shell_blocks() for line in block.splitlines() if "pytest" in line]
    assert test_commands == ["scripts/install-dev.sh && .venv/bin/pytest -q"]
    assert test_commands[0] in (ROOT / ".ci" / "run").read_text()


def test_every_path_named_exists():
    named = set(re.findall(r"`((?:examples|tests|scripts|helm|crds)/[\w./-]+)`", README))
    named |= set(re.findall(r"-f (examples/[\w./-]+)", README))
    assert named, "the README names files"
    missing = sorted(p for p in named if not (ROOT / p.rstrip("/")).exists())
    assert not missing, missing


def test_every_neuroscale_command_parses():
    parser = build_parser()
    commands = re.findall(r"(?:^|[\s`(])(?:\.venv/bin/)?neuroscale ((?:run|crds|plan|size|simulate|gateway)\b[^`\n|&]*)",
                          README)
    assert len(commands) >= 5
    for command in commands:
        args = shlex.split(command.replace("DIR", "examples").replace("FILE", "trace.csv"))
        if len(args) == 1 and args[0] in ("plan", "simulate"):
            continue  # named in prose; the full command appears elsewhere
        parser.parse_args(args)  # exits (fails the test) on an unknown flag or subcommand
