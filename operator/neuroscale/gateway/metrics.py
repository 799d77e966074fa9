"""Gateway Prometheus metrics (prometheus-client), one registry per app so tests and benchmarks stay isolated."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from neuroscale.gateway.protocol import usage_tokens

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "neuroscale_gateway_requests",
            "Requests answered, by endpoint, serving tier (or 'cache') and the HTTP status the client received "
            "(499: the client left before a response started).",
            ["endpoint", "tier", "status"], registry=r,
        )
        self.tokens = Counter(
            "neuroscale_gateway_tokens",
            "Tokens reported by upstreams, by tier, kind (prompt|completion) and LoRA adapter (empty: the base model).",
            ["tier", "kind", "adapter"], registry=r,
        )
        self.escalations = Counter(
            "neuroscale_gateway_escalations", "Requests moved past a tier, by the tier left and the reason.",
            ["from_tier", "reason"], registry=r,
        )
        self.cache_hits = Counter(
            "neuroscale_gateway_cache_hits", "Cache hits by configured mode and how the hit was found (exact|semantic).",
            ["mode", "kind"], registry=r,
        )
        self.cache_misses = Counter("neuroscale_gateway_cache_misses", "Cache misses by mode.", ["mode"], registry=r)
        self.cache_evictions = Counter(
            "neuroscale_gateway_cache_evictions", "Entries evicted to make room, by mode.", ["mode"], registry=r
        )
        self.upstream_errors = Counter(
            "neuroscale_gateway_upstream_errors", "Upstream failures by tier and kind (timeout|error|rejected).",
            ["tier", "kind"], registry=r,
        )
        self.client_disconnects = Counter(
            "neuroscale_gateway_client_disconnects", "Streams the client closed before the answer ended.", registry=r
        )
        self.stream_errors = Counter(
            "neuroscale_gateway_stream_errors",
            "Streams that failed after they started (status 200 already sent) and ended with an error event, by "
            "endpoint, serving tier and kind (timeout|error|rejected for upstream failures, gateway for the gateway's own).",
            ["endpoint", "tier", "kind"], registry=r,
        )
        self.time_to_first_token = Histogram(
            "neuroscale_gateway_time_to_first_token_seconds", "Request arrival to first byte of the answer.",
            ["endpoint", "tier"], buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.duration = Histogram(
            "neuroscale_gateway_request_duration_seconds", "Request arrival to end of the answer.",
            ["endpoint", "tier"], buckets=_LATENCY_BUCKETS, registry=r,
        )

    def hit(self, mode: str, kind: str) -> None:
        """neuroscale.cache.CacheMetrics callbacks."""
        self.cache_hits.labels(mode, kind).inc()

    def miss(self, mode: str) -> None:
        self.cache_misses.labels(mode).inc()

    def eviction(self, mode: str) -> None:
        self.cache_evictions.labels(mode).inc()

    def count_usage(self, tier: str, usage: Any, adapter: str = "") -> None:
        for kind, count in usage_tokens(usage).items():
            if count:
                self.tokens.labels(tier, kind, adapter).inc(count)
