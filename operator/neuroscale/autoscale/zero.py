"""Scale to zero and back: the 0↔1 decisions for a ModelDeployment with minReplicas 0 (pure).

The throughput policy (`policy.decide`) never sees zero: it runs with a floor of one replica, and this module owns
the two transitions around it.

- **Wake (0→1)** when a cascade gateway reports demand for the deployment: requests it held or bridged to the next
  tier because this one had no ready replica, counted over the metric window (`neuroscale_gateway_cold_requests`,
  summed over every gateway replica by Prometheus). Engines cannot report demand while no pod runs.
- **Sleep (N→0)** after the deployment has been idle — no generated tokens, no queue, no gateway demand — for
  ``idle_before_zero_s``. Releasing a replica buys a cold start the next time demand comes back, so the idle period is
  the cold start itself (the break-even of ski rental: whatever the gap before the next request, idle time paid plus
  cold start paid stay within twice what hindsight would pay), and never shorter than the metric window, over which
  "no tokens" is measured. A wake and the next sleep are thus at least a cold start apart: no flapping.
- **Fail static.** A missing engine reading never starts the idle clock; a missing demand reading holds zero (the
  gateway's bridge keeps serving) and is reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ZeroConfig", "ZeroDecision", "ZeroInputs", "decide_zero"]


@dataclass(frozen=True)
class ZeroConfig:
    """How long a deployment must be idle before it is scaled to zero."""

    idle_before_zero_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.idle_before_zero_s) and self.idle_before_zero_s > 0):
            raise ValueError(f"idle_before_zero_s must be a finite number > 0, got {self.idle_before_zero_s}")

    @classmethod
    def derived(cls, cold_start_s: float, metric_window_s: float) -> ZeroConfig:
        """Idle for one cold start (break-even), at least one metric window."""
        return cls(idle_before_zero_s=max(float(cold_start_s), float(metric_window_s)))


@dataclass(frozen=True)
class ZeroInputs:
    """What one control interval saw. None: that reading is missing."""

    current_replicas: int
    tokens_per_second: float | None
    queue_depth: float | None
    gateway_demand: float | None  # requests gateways held or bridged for this deployment within the metric window


@dataclass(frozen=True)
class ZeroDecision:
    """``replicas`` None: not a 0↔1 matter, the throughput policy decides (``note`` may add to its reason).

    ``idle_since`` is what to pass to the next call.
    """

    replicas: int | None
    reason: str
    idle_since: float | None
    metrics_healthy: bool = True
    note: str = ""


def _zero(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and abs(value) < 1e-9


def _positive(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and value > 1e-9


def decide_zero(now: float, seen: ZeroInputs, idle_since: float | None, config: ZeroConfig) -> ZeroDecision:
    """The 0↔1 decision for this interval, or None replicas when the throughput policy should decide."""
    current = max(0, int(seen.current_replicas))
    demand = seen.gateway_demand
    if current == 0:
        if demand is None:
            return ZeroDecision(0, "hold 0 (scaled to zero): no cascade gateway reports demand for this deployment; "
                                "it wakes when one does", None, metrics_healthy=False)
        if _positive(demand):
            return ZeroDecision(1, f"scale up 0→1: {demand:,.0f} requests waited for it at a cascade gateway "
                                "(served by the next tier meanwhile)", None)
        return ZeroDecision(0, "hold 0 (scaled to zero): no requests waiting at a cascade gateway", None)

    idle = _zero(seen.tokens_per_second) and (seen.queue_depth is None or _zero(seen.queue_depth)) \
        and not _positive(demand)
    if not idle:
        return ZeroDecision(None, "", None)
    since = now if idle_since is None else min(idle_since, now)
    idle_for = now - since
    if idle_for >= config.idle_before_zero_s:
        return ZeroDecision(0, f"scale down {current}→0: idle for {idle_for:.0f}s (no tokens, no queue, no gateway "
                            f"demand), at least {config.idle_before_zero_s:.0f}s", None)
    return ZeroDecision(None, "", since,
                        note=f"idle {idle_for:.0f}s of {config.idle_before_zero_s:.0f}s before scaling to zero")
