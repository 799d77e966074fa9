"""`neuroscale usage`: the last day's (or any window's) requests, tokens, cache savings and dollars per tenant and
tier of a cascade, read from Prometheus or Amazon Managed Service for Prometheus."""

from __future__ import annotations

import argparse
import os
import sys
import time

import requests
from prometheus_api_client import PrometheusApiClientException

from neuroscale.autoscale.metrics import MetricsSource, PrometheusSettings
from neuroscale.cli import InputError
from neuroscale.usage.report import check_window, format_table, usage_queries, usage_rows

EXAMPLE = """example:
  neuroscale usage --prometheus-url http://prometheus-server.monitoring --namespace models --cascade chat
  neuroscale usage --prometheus-url https://aps-workspaces.us-east-1.amazonaws.com/workspaces/ws-1 \\
      --prometheus-sigv4-region us-east-1 --namespace models --cascade chat --window 7d"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "usage", help="per-tenant usage and cost of a cascade, from Prometheus",
        description="Print requests, prompt and generated tokens, cache hits and the tokens they saved, escalations "
        "and USD per tenant and tier, from the gateway's neuroscale_gateway_tenant_* counters.",
        epilog=EXAMPLE, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--prometheus-url", default=os.environ.get("NEUROSCALE_PROMETHEUS_URL"),
                        help="Prometheus (or AMP workspace) query URL; default $NEUROSCALE_PROMETHEUS_URL")
    parser.add_argument("--prometheus-bearer-token-file", help="file with a bearer token for Prometheus")
    parser.add_argument("--prometheus-sigv4-region", help="sign queries for Amazon Managed Service for Prometheus")
    parser.add_argument("--namespace", help="the cascade's namespace (default: every namespace)")
    parser.add_argument("--cascade", help="the InferenceCascade's name (default: every gateway)")
    parser.add_argument("--window", default="1d", help="how far back: 30m, 12h, 1d (default), 1w")
    parser.set_defaults(func=main)
    return parser


def main(args: argparse.Namespace) -> int:
    if not args.prometheus_url:
        raise InputError("--prometheus-url is required (or set NEUROSCALE_PROMETHEUS_URL)")
    try:
        check_window(args.window)
        settings = PrometheusSettings(url=args.prometheus_url, bearer_token_file=args.prometheus_bearer_token_file,
                                      sigv4_region=args.prometheus_sigv4_region, timeout_s=30.0)
    except ValueError as error:
        raise InputError(str(error)) from None
    source = MetricsSource(settings)
    now = time.time()
    try:
        answers = {column: source.vector(query, now)
                   for column, query in usage_queries(args.namespace, args.cascade, args.window).items()}
    except (requests.RequestException, PrometheusApiClientException, ValueError, KeyError) as error:
        print(f"neuroscale usage: Prometheus at {args.prometheus_url} failed: {str(error)[:500]}", file=sys.stderr)
        return 1
    finally:
        source.close()
    print(format_table(usage_rows(answers), args.window))
    return 0
