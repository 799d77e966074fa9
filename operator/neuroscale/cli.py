"""The `neuroscale` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

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
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `neuroscale plan ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
