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
from neuroscale.cli import INPUT_ERROR_EXIT, InputError, one_line
from neuroscale.render.plan import PlanResult, plan_documents

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

# What one `plan` run reads, in total over every file and stdin. Memory and time grow with these, not with what
# a hostile input asks for: the pure-Python YAML loader keeps ~0.7 KB per node while it composes a document (a
# 2-byte `1,` in a flow list is a node), so the node budget is what bounds memory; the byte budget bounds reading
# and long scalars. Real manifests are far below both: the examples' ModelDeployments are 30-60 nodes and under
# 1 KB, and the Deployment, Service and PodDisruptionBudget rendered for one are ~500 nodes in 7 KB.
MAX_INPUT_BYTES = 16 * 1024 * 1024
MAX_NODES = 250_000  # counted as expanded: an alias counts every node it stands for
# Kubernetes objects nest a few tens of levels at most (the Deployments rendered from the examples: 11; deep CRD
# schemas: a few tens); Python's recursion limit (1000 frames) must keep room for the composer (3 frames a level)
# and for what renders the result.
MAX_DEPTH = 100

EXAMPLES = """\
examples:
  neuroscale plan -f examples/llama-3.1-8b-inf2.yaml
  neuroscale plan -f examples/ -n models --output json
  kubectl get modeldeployments -o yaml | neuroscale plan -f -
"""


class PlanInputError(InputError):
    """A file that cannot be read or parsed, or is over a bound; the message names it."""


class _Budget:
    """What is left of MAX_INPUT_BYTES and MAX_NODES for the rest of one run."""

    def __init__(self) -> None:
        self.max_bytes, self.max_nodes = MAX_INPUT_BYTES, MAX_NODES
        self.bytes_left, self.nodes_left = MAX_INPUT_BYTES, MAX_NODES

    def check_bytes(self, source: str, size: int, *, known: bool = True) -> None:
        """Refuse ``size`` more bytes when over budget; ``known=False`` when reading stopped at the budget."""
        if size > self.bytes_left:
            what = f"{_mib(size)}{'' if self.bytes_left == self.max_bytes else ' with the input before it'}, "
            raise PlanInputError(f"{source}: {what if known else ''}more than the {_mib(self.max_bytes)} of "
                                 "manifests plan reads in one run; plan them in several runs")

    def take_bytes(self, source: str, size: int, *, known: bool = True) -> None:
        self.check_bytes(source, size, known=known)
        self.bytes_left -= size


def _mib(size: int) -> str:
    return f"{size / 2**20:.3g} MiB"


class _LimitExceeded(yaml.MarkedYAMLError):
    """A document over MAX_DEPTH or MAX_NODES, or an alias that contains itself."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with bounds checked while it composes, before anything is built.

    The composer recurses once per nesting level, so depth is checked on the way down (a 100 000-deep `[[[...`
    used to end in RecursionError). Every node counts against the run's node budget as it is composed; an alias
    counts the whole subtree it stands for and adds that subtree's height to the depth (a chain of anchors each
    holding the previous one expands exponentially: the "billion laughs"), and an alias to a node still being
    composed would make a recursive structure, which no manifest is.
    """

    def __init__(self, stream: str, budget: _Budget) -> None:
        super().__init__(stream)
        self._budget = budget
        self._open: list[list[int]] = []  # [expanded size, height] of each node being composed, outermost first
        self._anchored: dict[int, tuple[int, int]] = {}  # id(anchored node) -> (expanded size, height), per document

    def compose_document(self) -> Any:
        try:
            return super().compose_document()
        finally:
            self._anchored = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            if id(node) not in self._anchored:
                raise _LimitExceeded(None, None, f"alias *{event.anchor} refers to a node that contains it "
                                                 "(a recursive structure)", event.start_mark)
            size, height = self._anchored[id(node)]
        else:
            if len(self._open) >= MAX_DEPTH:
                raise self._too_deep(event)
            self._open.append([1, 1])
            node = super().compose_node(parent, index)
            size, height = self._open.pop()
            if event.anchor is not None:
                self._anchored[id(node)] = (size, height)
        if len(self._open) + height > MAX_DEPTH:
            raise self._too_deep(event)
        # A node composed here counts once (its children counted themselves); an alias counts all it expands to.
        self._budget.nodes_left -= size if isinstance(event, yaml.AliasEvent) else 1
        if self._budget.nodes_left < 0:
            raise _LimitExceeded(None, None, f"more than {self._budget.max_nodes} YAML nodes in one run (aliases "
                                             "counted as expanded); plan the manifests in several runs",
                                 event.start_mark)
        if self._open:
            outer = self._open[-1]
            outer[0] += size
            outer[1] = max(outer[1], height + 1)
        return node

    @staticmethod
    def _too_deep(event: Any) -> _LimitExceeded:
        return _LimitExceeded(None, None, f"nested more than {MAX_DEPTH} levels deep; Kubernetes manifests never "
                                          "are", event.start_mark)


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""


def _yaml_problem(err: yaml.YAMLError) -> str:
    """A PyYAML error on one line: where, what, and in what context."""
    if isinstance(err, yaml.MarkedYAMLError):
        what = err.problem or err.context or "invalid"
        if err.problem and err.context:
            what += f" ({err.context})"
        return _where(err.problem_mark or err.context_mark) + what
    if isinstance(err, yaml.reader.ReaderError):
        char = err.character if isinstance(err.character, int) else ord(err.character[:1] or "\0")
        return f"character {err.position + 1}: unacceptable character #x{char:04x} ({err.reason})"
    return one_line(err)


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
    try:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in MANIFEST_SUFFIXES)
            if not found:
                raise PlanInputError(f"{target}: no {'/'.join(MANIFEST_SUFFIXES)} files in this directory")
            return found
    except OSError as err:
        raise PlanInputError(f"{target}: cannot list: {err.strerror or err}") from None
    if not path.exists():
        raise PlanInputError(f"{target}: no such file or directory")
    return [path]


def _parse(text: str, source: str, budget: _Budget) -> list[Any]:
    """Every non-empty document, as `yamlio.load_all` reads them, within the bounds above."""
    loader = None
    try:
        loader = _BoundedLoader(text, budget)  # checks every character is printable
        docs = []
        while loader.check_data():
            doc = loader.get_data()
            if doc is not None:
                docs.append(doc)
        return docs
    except _LimitExceeded as err:
        raise PlanInputError(f"{source}: {_yaml_problem(err)}") from None
    except yaml.YAMLError as err:
        raise PlanInputError(f"{source}: not valid YAML or JSON: {_yaml_problem(err)}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _read(path: Path, budget: _Budget) -> str:
    """The file's text; an over-size file is refused from its size, before a byte of it is read."""
    source = str(path)
    try:
        budget.check_bytes(source, path.stat().st_size)
        with path.open(encoding="utf-8") as handle:
            # Reading is bounded too: a device or a file that grows does not report its size.
            text = handle.read(budget.bytes_left + 1)
    except (OSError, UnicodeDecodeError) as err:
        raise PlanInputError(f"{path}: cannot read: {one_line(err)}") from None
    budget.take_bytes(source, len(text), known=False)
    return text


def read_documents(targets: list[str], stdin: TextIO, budget: _Budget | None = None
                   ) -> Iterator[tuple[str, list[Any]]]:
    """(source name, documents) per file, in the order given."""
    budget = budget or _Budget()
    for target in targets:
        if target == "-":
            text = stdin.read(budget.bytes_left + 1)
            budget.take_bytes("<stdin>", len(text), known=False)
            yield "<stdin>", _parse(text, "<stdin>", budget)
            continue
        for path in _files(target):
            yield str(path), _parse(_read(path, budget), str(path), budget)


def render_output(objects: list[dict], output: str) -> str:
    if output == "json":
        return json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}, indent=2) + "\n"
    return yamlio.dump_all(objects) if objects else ""


def main(args: argparse.Namespace, stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Plan every manifest. A file that cannot be read or parsed raises PlanInputError before anything is
    printed (the `neuroscale` entry point reports it on one line, exit status 2); documents that are invalid are
    reported one line each, the others still rendered, and the exit status is 2 as well."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    sources = list(read_documents(args.filename, stdin))
    objects: list[dict] = []
    failed = False
    for source, docs in sources:
        result: PlanResult = plan_documents(docs, args.namespace)
        for line in result.summaries:
            print(f"{source}: {line}", file=stderr)
        for line in result.notes:
            print(f"{source}: note: {line}", file=stderr)
        for line in result.errors:
            print(f"{source}: error: {line}", file=stderr)
        failed = failed or not result.ok
        objects += result.objects
    stdout.write(render_output(objects, args.output))
    return INPUT_ERROR_EXIT if failed else 0
