"""`neuroscale gateway`: run the data plane from the config file the operator renders."""

from __future__ import annotations

import argparse
import logging
import sys

from aiohttp import web

from neuroscale.gateway.app import build_app
from neuroscale.gateway.config import ConfigError, load_config

EXAMPLE = "example: neuroscale gateway --config /etc/neuroscale/gateway.json --port 8080"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "gateway",
        help="run the OpenAI-compatible cascade gateway (data plane)",
        description="Serve /v1/chat/completions, /v1/completions and /v1/models in front of the configured tiers, "
        "with the response cache, escalation rules, /metrics, /healthz and /readyz.",
        epilog=EXAMPLE,
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="gateway config (JSON, as rendered by the operator)")
    parser.add_argument("--host", help="listen address (overrides the config's host)")
    parser.add_argument("--port", type=int, help="listen port (overrides the config's port)")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"neuroscale gateway: {error}", file=sys.stderr)
        return 2
    host = args.host or config.host
    port = config.port if args.port is None else args.port
    if not 0 <= port <= 65535:
        print(f"neuroscale gateway: --port must be between 0 and 65535, got {port}", file=sys.stderr)
        return 2
    try:
        # On SIGTERM aiohttp closes the listener, runs on_shutdown (readiness off), then waits for the handlers in
        # flight (a stream included) up to shutdown_timeout before it cancels them.
        web.run_app(build_app(config), host=host, port=port, access_log=None, print=None,
                    shutdown_timeout=config.drain_seconds)
    except (OSError, ValueError) as error:
        print(f"neuroscale gateway: cannot serve on {host}:{port}: {error}", file=sys.stderr)
        return 1
    return 0
