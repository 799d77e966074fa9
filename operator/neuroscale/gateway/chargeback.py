"""What each tenant used and cost, per tier, as Prometheus counters: the source of `neuroscale usage` and of the
per-tenant summary in the InferenceCascade's status.

Label values are bounded: `tenant` is a name from the tenants file (API keys), `default` (no authentication) or one
of at most `auth.max_tenants` names (trusted header, then `other`); `tier` is a configured tier or `cache`.
Dollars are tokens times the tier's price (`TierPrice`, rendered from the ModelDeployment's cost per million
tokens or the cascade's price table); a cache hit costs nothing and counts the tokens it saved instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from neuroscale.gateway.auth import Tenant
from neuroscale.gateway.config import GatewayConfig
from neuroscale.gateway.protocol import TOKEN_KINDS, usage_tokens

CACHE_TIER = "cache"
class Chargeback:
    def __init__(self, config: GatewayConfig, registry: CollectorRegistry) -> None:
        self.prices = {tier.name: tier.price for tier in config.tiers}
        self.requests = Counter(
            "neuroscale_gateway_tenant_requests", "Answered requests by tenant and the tier that answered (or cache).",
            ["tenant", "tier"], registry=registry,
        )
        self.tokens = Counter(
            "neuroscale_gateway_tenant_tokens", "Tokens tiers reported for a tenant's requests, by tier and kind "
            "(prompt|completion); a request that escalated counts the tokens of every tier that answered it.",
            ["tenant", "tier", "kind"], registry=registry,
        )
        self.cost = Counter(
            "neuroscale_gateway_tenant_cost_usd", "USD a tenant's tokens cost, by tier (tokens × the tier's price).",
            ["tenant", "tier"], registry=registry,
        )
        self.cache_hits = Counter(
            "neuroscale_gateway_tenant_cache_hits", "Requests a tenant had answered from the cache.", ["tenant"],
            registry=registry,
        )
        self.saved_tokens = Counter(
            "neuroscale_gateway_tenant_saved_tokens", "Tokens cache hits did not have generated again, by kind.",
            ["tenant", "kind"], registry=registry,
        )
        self.escalations = Counter(
            "neuroscale_gateway_tenant_escalations", "A tenant's requests moved past a tier, by the tier left.",
            ["tenant", "from_tier"], registry=registry,
        )

    def initialise(self, tenants: Iterable[str]) -> None:
        """Create every series of these tenants at 0, so Prometheus' increase() counts a tenant's first requests
        (a series that appears at 3 looks to it like a series that was always 3)."""
        names = list(self.prices)
        for tenant in tenants:
            for tier in names:
                self.requests.labels(tenant, tier)
                self.cost.labels(tenant, tier)
                for kind, _ in TOKEN_KINDS:
                    self.tokens.labels(tenant, tier, kind)
            for tier in names[:-1]:
                self.escalations.labels(tenant, tier)
            self.requests.labels(tenant, CACHE_TIER)
            self.cache_hits.labels(tenant)
            for kind, _ in TOKEN_KINDS:
                self.saved_tokens.labels(tenant, kind)

    def served(self, tenant: Tenant, tier: str, usages: Iterable[tuple[str, Any]],
               escalations: Iterable[tuple[str, Any]]) -> int:
        """Record an answer a tier gave; `usages` holds (tier, usage) of every tier that answered. Returns the
        total tokens, which the quota charges."""
        label = tenant.metric_label
        self.requests.labels(label, tier).inc()
        total = 0
        for used_tier, usage in usages:
            tokens = usage_tokens(usage)
            price = self.prices.get(used_tier)
            dollars = 0.0
            for kind, count in tokens.items():
                if count:
                    self.tokens.labels(label, used_tier, kind).inc(count)
                    total += count
            if price is not None:
                dollars = (tokens["prompt"] * price.prompt_per_million
                           + tokens["completion"] * price.completion_per_million) / 1e6
            if dollars:
                self.cost.labels(label, used_tier).inc(dollars)
        for from_tier, _ in escalations:
            self.escalations.labels(label, from_tier).inc()
        return total

    def cache_hit(self, tenant: Tenant, usage: Any) -> None:
        label = tenant.metric_label
        self.requests.labels(label, CACHE_TIER).inc()
        self.cache_hits.labels(label).inc()
        for kind, count in usage_tokens(usage).items():
            if count:
                self.saved_tokens.labels(label, kind).inc(count)
