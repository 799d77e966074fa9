"""PromQL for the chargeback counters and the per-tenant × tier table built from the answers (pure)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields

from neuroscale.autoscale.promql import promql_string, re2_escape

# A gateway pod is named <cascade>-gateway-<pod-template-hash>-<5 chars> (render/inferencecascade.py names the
# Deployment <cascade>-gateway).
_GATEWAY_POD = "-gateway-[a-z0-9]+-[a-z0-9]+"
CACHE_TIER = "cache"

Sample = tuple[Mapping[str, str], float]


@dataclass
class UsageRow:
    """One tenant on one tier over the window; the `cache` tier holds its cache hits (which cost nothing)."""

    tenant: str
    tier: str
    requests: float = 0.0
    prompt_tokens: float = 0.0
    completion_tokens: float = 0.0
    cache_hits: float = 0.0
    saved_tokens: float = 0.0
    escalations: float = 0.0
    cost_usd: float = 0.0


def check_window(window: str) -> str:
    """A PromQL duration of minutes to weeks (e.g. 1d, 12h), so no text is spliced into a range selector."""
    if not re.match(r"^[1-9][0-9]{0,4}(m|h|d|w)$", window):
        raise ValueError(f"window {window!r} is not a duration such as 30m, 12h, 1d or 1w")
    return window


def selector(namespace: str | None, cascade: str | None, **labels: str) -> str:
    """Series of one cascade's gateways (by the namespace and pod labels every usual scrape setup attaches)."""
    matchers = []
    if namespace:
        matchers.append(f"namespace={promql_string(namespace)}")
    if cascade:
        matchers.append(f"pod=~{promql_string(re2_escape(cascade) + _GATEWAY_POD)}")
    matchers += [f"{key}={promql_string(value)}" for key, value in labels.items()]
    return "{" + ",".join(matchers) + "}"


def usage_queries(namespace: str | None, cascade: str | None, window: str) -> dict[str, str]:
    """Column → query over the last `window`, one series per tenant and tier (or tenant, for the cache)."""
    check_window(window)

    def increase(metric: str, by: str, **labels: str) -> str:
        sel = selector(namespace, cascade, **labels)
        return f"sum by ({by}) (increase(neuroscale_gateway_tenant_{metric}_total{sel}[{window}]))"

    return {
        "requests": increase("requests", "tenant, tier"),
        "prompt_tokens": increase("tokens", "tenant, tier", kind="prompt"),
        "completion_tokens": increase("tokens", "tenant, tier", kind="completion"),
        "cost_usd": increase("cost_usd", "tenant, tier"),
        "cache_hits": increase("cache_hits", "tenant"),
        "saved_tokens": increase("saved_tokens", "tenant"),
        "escalations": increase("escalations", "tenant, from_tier"),
    }


def usage_rows(answers: Mapping[str, Iterable[Sample]]) -> list[UsageRow]:
    """The table from each column's answer: rows sorted by tenant then tier, cache last; all-zero rows left out."""
    rows: dict[tuple[str, str], UsageRow] = {}
    for column, samples in answers.items():
        for labels, value in samples:
            tenant = labels.get("tenant", "")
            tier = labels.get("from_tier") or labels.get("tier") or CACHE_TIER
            if column in ("cache_hits", "saved_tokens"):
                tier = CACHE_TIER
            row = rows.setdefault((tenant, tier), UsageRow(tenant, tier))
            setattr(row, column, getattr(row, column) + value)
    # The gateway creates every tenant × tier series at 0 (so increase() sees first requests): skip those still 0.
    used = [row for row in rows.values() if any(getattr(row, f.name) for f in fields(UsageRow)[2:])]
    return sorted(used, key=lambda r: (r.tenant, r.tier == CACHE_TIER, r.tier))


def tenant_totals(rows: Sequence[UsageRow]) -> list[UsageRow]:
    """One row per tenant (tier `*`): what goes into the InferenceCascade's status."""
    totals: dict[str, UsageRow] = {}
    for row in rows:
        total = totals.setdefault(row.tenant, UsageRow(row.tenant, "*"))
        for f in fields(UsageRow)[2:]:
            setattr(total, f.name, getattr(total, f.name) + getattr(row, f.name))
    return [totals[name] for name in sorted(totals)]


def format_table(rows: Sequence[UsageRow], window: str) -> str:
    header = ("tenant", "tier", "requests", "prompt tok", "generated tok", "cache hits", "tok saved", "escalated",
              "USD")
    lines = [[r.tenant, r.tier, f"{r.requests:.0f}", f"{r.prompt_tokens:.0f}", f"{r.completion_tokens:.0f}",
              f"{r.cache_hits:.0f}", f"{r.saved_tokens:.0f}", f"{r.escalations:.0f}", f"{r.cost_usd:.4f}"]
             for r in [*rows, *tenant_totals(rows)]]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    out = [f"usage over the last {window} (tier * = the tenant's total; escalated = requests that left this tier)",
           "  ".join(h.ljust(w) if i < 2 else h.rjust(w) for i, (h, w) in enumerate(zip(header, widths)))]
    for line in lines:
        out.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths))))
    if not rows:
        out.append("(no requests recorded in this window)")
    return "\n".join(out)
