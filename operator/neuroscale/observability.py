"""The operator's own Prometheus metrics (served on --metrics-port)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

RECONCILES = Counter(
    "neuroscale_reconciles_total", "Reconciles by kind and result.", ["kind", "result"]
)
RECONCILE_SECONDS = Histogram(
    "neuroscale_reconcile_duration_seconds", "Time to reconcile one object.", ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
CHILD_WRITES = Counter(
    "neuroscale_child_writes_total", "Child objects created or patched, by kind and outcome.", ["kind", "outcome"]
)
SCALING_DECISIONS = Counter(
    "neuroscale_scaling_decisions_total", "Autoscaler decisions that changed replicas, by direction.", ["direction"]
)
METRICS_HEALTHY = Gauge(
    "neuroscale_autoscaler_metrics_healthy", "1 when the last metrics read for a ModelDeployment was usable.",
    ["namespace", "name"],
)
