"""The `neuroscale` command line: one entry point, one subcommand per job.

Input errors are reported one way for every subcommand: a subcommand raises `InputError` (or argparse rejects an
argument through one of the shared `type=` validators below), and `main` prints exactly one line,
``neuroscale <command>: <message>``, on stderr and returns exit status 2. Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from neuroscale import __version__

# Each subcommand lives beside the code it drives and registers itself with `add_parser(subparsers)`.
# Imported lazily per module so `neuroscale size` does not pay for kopf, torch or boto3.
SUBCOMMANDS = (
    "neuroscale.operator_cli",  # run
    "neuroscale.api.cli",  # crds
    "neuroscale.render.cli",  # plan
    "neuroscale.sizing.cli",  # size
    "neuroscale.autoscale.cli",  # simulate
    "neuroscale.gateway.cli",  # gateway
    "neuroscale.routing.cli",  # route-sim
    "neuroscale.usage.cli",  # usage
)

INPUT_ERROR_EXIT = 2  # as argparse exits on a bad argument
MAX_MESSAGE_CHARS = 2000  # an error line quotes user input; a hostile file must not make it megabytes long


class InputError(Exception):
    """Input the user can fix (a file, a value, a combination of flags); the message says what and how.

    Raised anywhere under a subcommand's `func`; `main` prints it as one line and exits with status 2.
    """


def one_line(message: object) -> str:
    """``message`` as a single printable line of bounded length (multi-line library errors are joined)."""
    text = "; ".join(part.strip() for part in str(message).splitlines() if part.strip())
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[: MAX_MESSAGE_CHARS - 1] + "…"


class _ArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument on one line, like every other input error, before exiting 2.

    Subparsers inherit the class (argparse creates them with ``type(parent)``), so this covers every subcommand.
    """

    def error(self, message: str) -> NoReturn:
        self._fail(self.prog, message)

    def parse_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # argparse reports these from the top parser; name the subcommand they were given to
            command = getattr(parsed, "command", None)
            self._fail(f"{self.prog} {command}" if command else self.prog,
                       f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def _fail(self, prog: str, message: str) -> NoReturn:
        self.exit(INPUT_ERROR_EXIT, f"{prog}: {one_line(message)} (see {prog} --help)\n")


# Shared argparse `type=` validators: a value that is not a finite number in range is refused while the command
# line is parsed, so no subcommand ever sees nan, inf or an absurd magnitude.

def _range_text(low: float, high: float, low_open: bool) -> str:
    def show(x: float) -> str:
        return str(x) if isinstance(x, int) else f"{x:g}"

    return f"{'>' if low_open else '>='} {show(low)} and <= {show(high)}"


def _quote(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def float_in(low: float, high: float, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite float in [low, high] (or (low, high] with ``low_open``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {_quote(text)}") from None
        if not (math.isfinite(value) and (value > low if low_open else value >= low) and value <= high):
            raise argparse.ArgumentTypeError(
                f"expected a finite number {_range_text(low, high, low_open)}, got {_quote(text)}")
        return value

    parse.__name__ = "number"
    return parse


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {_quote(text)}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a whole number {_range_text(low, high, False)}, got {_quote(text)}")
        return value

    parse.__name__ = "integer"
    return parse


# Values several subcommands take, validated the same way everywhere.
max_num_seqs_type = int_in(1, 65_536)  # concurrent sequences; vLLM on Neuron runs at most a few hundred
tokens_per_s_type = float_in(0.0, 1e9, low_open=True)  # one replica; the largest instance serves ~1e4
price_per_hour_type = float_in(0.0, 1e6)  # dollars; the dearest Neuron instance costs ~$50/h


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="neuroscale",
        description="Generative-AI inference on AWS Inferentia2 / Trainium, run by a Kubernetes operator.",
        epilog="Start with: neuroscale plan -f examples/llama-3.1-8b-inf2.yaml",
    )
    parser.add_argument("--version", action="version", version=f"neuroscale {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help / --version (0), or a bad argument already reported on one line (2)
        return 0 if exit_.code is None else int(exit_.code)
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"neuroscale {args.command}: {one_line(err)}", file=sys.stderr)
        return INPUT_ERROR_EXIT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `neuroscale plan ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
