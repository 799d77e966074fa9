"""`neuroscale plan`: print the Kubernetes objects the operator would create for ModelDeployment manifests."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import yaml

from neuroscale import yamlio
from neuroscale.render.plan import PlanResult, plan_documents

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

EXAMPLES = """\
examples:
  neuroscale plan -f examples/llama-3.1-8b-inf2.yaml
  neuroscale plan -f examples/ -n models --output json
  kubectl get modeldeployments -o yaml | neuroscale plan -f -
"""


class PlanInputError(Exception):
    """A file that cannot be read or parsed; the message names it."""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "plan",
        help="render the objects the operator would create, offline",
        description="Render the Deployments, Services, PodDisruptionBudgets and ServiceAccounts the operator "
        "would create for ModelDeployment manifests, without a cluster. Other kinds are passed over with a note "
        "on stderr; sizing summaries also go to stderr, so stdout can be piped to kubectl diff.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-f", "--filename", action="extend", nargs="+", required=True, metavar="FILE",
                        help="manifest file or directory (searched recursively for .yaml/.yml/.json); - reads "
                        "stdin; several may follow one -f, and -f may repeat")
    parser.add_argument("-n", "--namespace", default="default",
                        help="namespace for manifests that set none (default: %(default)s)")
    parser.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="output format")
    parser.set_defaults(func=main)
    return parser


def _files(target: str) -> list[Path]:
    path = Path(target)
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
        if not found:
            raise PlanInputError(f"{target}: no {'/'.join(MANIFEST_SUFFIXES)} files in this directory")
        return found
    if not path.exists():
        raise PlanInputError(f"{target}: no such file or directory")
    return [path]


def _parse(text: str, source: str) -> list[Any]:
    try:
        return list(yamlio.load_all(text))
    except yaml.YAMLError as err:
        raise PlanInputError(f"{source}: not valid YAML or JSON: {err}") from None


def read_documents(targets: list[str], stdin: TextIO) -> Iterator[tuple[str, list[Any]]]:
    """(source name, documents) per file, in the order given."""
    for target in targets:
        if target == "-":
            yield "<stdin>", _parse(stdin.read(), "<stdin>")
            continue
        for path in _files(target):
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as err:
                raise PlanInputError(f"{path}: cannot read: {err}") from None
            yield str(path), _parse(text, str(path))


def render_output(objects: list[dict], output: str) -> str:
    if output == "json":
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"
    return yamlio.dump_all(objects) if objects else ""


def main(args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    objects: list[dict] = []
    failed = False
    try:
        for source, docs in read_documents(args.filename, stdin):
            result: PlanResult = plan_documents(docs, args.namespace)
            for line in result.summaries:
                print(f"{source}: {line}", file=stderr)
            for line in result.notes:
                print(f"{source}: note: {line}", file=stderr)
            for line in result.errors:
                print(f"{source}: error: {line}", file=stderr)
            failed = failed or not result.ok
            objects += result.objects
    except PlanInputError as err:
        print(f"error: {err}", file=stderr)
        return 1
    stdout.write(render_output(objects, args.output))
    return 1 if failed else 0
