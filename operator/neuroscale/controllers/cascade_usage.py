"""The per-tenant usage summary in an InferenceCascade's status, read from the gateway's chargeback counters in
Prometheus (the PromQL of `neuroscale usage`), written by its own periodic loop (handlers/inferencecascade.py)."""

from __future__ import annotations

import logging
from typing import Any

import requests
from prometheus_api_client import PrometheusApiClientException

from neuroscale.autoscale.metrics import MetricsSource
from neuroscale.controllers.children import write_status
from neuroscale.k8s.client import KubeClient
from neuroscale.usage.report import UsageRow, tenant_totals, usage_queries, usage_rows

log = logging.getLogger(__name__)
WINDOW = "1d"
MAX_TENANTS = 50


def usage_summary(rows: list[UsageRow], window: str = WINDOW) -> dict[str, Any]:
    """The status' `usage`: whole counts (finer digits would turn every read into a write), costliest first."""
    totals = sorted(tenant_totals(rows), key=lambda t: (-t.cost_usd, -t.requests, t.tenant))
    tenants = [{"tenant": t.tenant, "requests": round(t.requests), "promptTokens": round(t.prompt_tokens),
                "completionTokens": round(t.completion_tokens), "cacheHits": round(t.cache_hits),
                "savedTokens": round(t.saved_tokens), "escalations": round(t.escalations),
                "costUsd": round(t.cost_usd, 4)} for t in totals[:MAX_TENANTS]]
    return {"window": window, "tenants": tenants, "omittedTenants": max(0, len(totals) - MAX_TENANTS)}


def read_usage(source: MetricsSource, namespace: str, name: str, now: float) -> dict[str, Any] | None:
    """The summary for one cascade's gateways; None when Prometheus failed (logged; the last summary stays)."""
    try:
        answers = {column: source.vector(query, now) for column, query in usage_queries(namespace, name, WINDOW).items()}
    except (requests.RequestException, PrometheusApiClientException, ValueError, KeyError) as error:
        log.warning("usage of InferenceCascade %s/%s not read from Prometheus: %s", namespace, name, str(error)[:300])
        return None
    return usage_summary(usage_rows(answers))


def refresh(body: dict[str, Any], kube: KubeClient, source: MetricsSource, now: float) -> bool:
    """Write the usage summary into status when it changed; True when written."""
    meta = body["metadata"]
    summary = read_usage(source, meta["namespace"], meta["name"], now)
    if summary is None:
        return False
    return write_status(body, lambda current: {**current, "usage": summary}, kube) is not None
