"""`neuroscale run`: start the operator (kopf) with its metrics and health endpoints."""

from __future__ import annotations

import argparse
import random
import sys

HELP = """\
Examples:
  neuroscale run --all-namespaces --prometheus-url http://prometheus-server.monitoring:80
  neuroscale run --namespace models --namespace staging

High availability: run two or more replicas with --peering. Each replica takes a random priority unless
--priority is given, so exactly one is active and the others stand by (kopf freezes an operator that sees a peer
of higher or equal priority; equal priorities on every replica would freeze them all).
"""


def main(args: argparse.Namespace) -> int:
    import kopf
    from prometheus_client import start_http_server

    from neuroscale.handlers import build_registry
    from neuroscale.k8s.client import KubeClient
    from neuroscale.runtime import OperatorConfig, Runtime

    if not args.all_namespaces and not args.namespace:
        print("neuroscale run: give --all-namespaces or at least one --namespace", file=sys.stderr)
        return 2
    config = OperatorConfig(
        resync_seconds=args.resync_seconds,
        autoscale_interval_seconds=args.autoscale_interval_seconds,
        prometheus_url=args.prometheus_url,
        prometheus_bearer_token_file=args.prometheus_bearer_token_file,
        prometheus_ca_file=args.prometheus_ca_file,
        prometheus_sigv4_region=args.prometheus_sigv4_region,
        prometheus_rate_window=args.prometheus_rate_window,
        gateway_image=args.gateway_image or OperatorConfig().gateway_image,
        compile_cache_check_seconds=args.compile_cache_check_seconds,
    )
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat.JSON if args.log_format == "json"
                   else kopf.LogFormat.PLAIN)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr=args.bind_address)
    priority = args.priority if args.priority is not None else random.randint(1, 2**31 - 1)
    kopf.run(
        registry=build_registry(config),
        clusterwide=args.all_namespaces,
        namespaces=args.namespace or (),
        standalone=not args.peering,
        peering_name=args.peering,
        priority=priority,
        liveness_endpoint=f"http://{args.bind_address}:{args.health_port}/healthz" if args.health_port else None,
        memo=kopf.Memo(runtime=Runtime(kube=KubeClient(), config=config)),
    )
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "run", help="run the operator", description="Run the neuroscale operator against the current cluster.",
        epilog=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scope = parser.add_argument_group("scope")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="watch every namespace")
    scope.add_argument("--namespace", "-n", action="append", default=[], help="watch this namespace (repeatable)")
    metrics = parser.add_argument_group("autoscaling metrics")
    metrics.add_argument("--prometheus-url", help="Prometheus (or AMP workspace) query URL for autoscaling")
    metrics.add_argument("--prometheus-bearer-token-file", help="file with a bearer token for Prometheus")
    metrics.add_argument("--prometheus-ca-file", help="CA bundle for a TLS Prometheus")
    metrics.add_argument("--prometheus-sigv4-region", help="sign queries for Amazon Managed Service for Prometheus")
    metrics.add_argument("--prometheus-rate-window", default="2m",
                         help="PromQL rate() window, several scrape intervals long (default 2m)")
    parser.add_argument("--resync-seconds", type=float, default=300.0, help="drift-correction period (default 300)")
    parser.add_argument("--autoscale-interval-seconds", type=float, default=15.0,
                        help="autoscaler control interval (default 15)")
    parser.add_argument("--compile-cache-check-seconds", type=float, default=60.0,
                        help="reuse an S3 answer about an artifact key this long (default 60; a found key 10x)")
    parser.add_argument("--gateway-image", help="image for InferenceCascade gateways (default: this release's)")
    parser.add_argument("--peering", metavar="NAME", help="kopf peering object for high availability")
    parser.add_argument("--priority", type=int, help="peering priority (default: random, see below)")
    parser.add_argument("--metrics-port", type=int, default=9090, help="Prometheus metrics port (0 disables)")
    parser.add_argument("--health-port", type=int, default=8080, help="liveness port, /healthz (0 disables)")
    parser.add_argument("--bind-address", default="0.0.0.0", help="address of the metrics and health endpoints")
    parser.add_argument("--log-format", choices=("plain", "json"), default="plain")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.set_defaults(func=main)
