"""A replica's capacity as the engines' gauges show it, weighed against the sizing estimate.

README "Measured capacity". Pure: reads in, a figure out. The policy (`policy.decide`) scales on it in place of the configured estimate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neuroscale.autoscale.policy import Observation

__all__ = ["CAPACITY_PRIOR_SD", "CAPACITY_SPAN_S", "MIN_BUSY_SHARE", "busy_replicas", "measured_capacity"]

# Reads of a fleet less than half busy are left out: a small batch decodes faster per sequence than a full one,
# so they would overstate what a replica serves at full load.
MIN_BUSY_SHARE = 0.5
# How long the gauges are averaged over: capacity does not change while the model, the instance and the traffic mix
# stay the same, and an instant gauge read every 15 s needs many reads to average out bursts shorter than a read.
CAPACITY_SPAN_S = 1800.0
# The sizing estimate's uncertainty as one standard deviation: its ±30 % band (sizing/throughput.py) read as 2 σ.
CAPACITY_PRIOR_SD = 0.15
# Fewer reads than this leave the estimate alone.
MIN_READS = 8


def _gauge(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) and value >= 0 else None


def busy_replicas(read: Observation, max_num_seqs: int | None) -> float | None:
    """Replicas' worth of the fleet busy at a read: the nearer-exhausted of its sequence slots (``running`` ÷
    ``max_num_seqs`` per ready replica) and its KV cache (``kv_cache_usage``); None without either gauge."""
    if read.ready_replicas <= 0:
        return None
    running, kv = _gauge(read.running), _gauge(read.kv_cache_usage)
    shares = [share for share in (running / (max_num_seqs * read.ready_replicas)
                                  if running is not None and max_num_seqs else None, kv) if share is not None]
    return min(1.0, max(shares)) * read.ready_replicas if shares else None


def measured_capacity(now: float, reads: Sequence[Observation], *, estimate: float, max_num_seqs: int | None,
                      rate_window_s: float, horizon_s: float) -> float | None:
    """Work one replica serves at full load: ``estimate``, corrected by what the gauges show.

    ``reads`` are in time order with a served-work rate each. Over the last ``CAPACITY_SPAN_S`` (at least a
    horizon), served work ÷ busy replicas, each read's rate set against the busy replicas averaged over that rate's
    window (a gauge is an instant, the rate its window's mean), counting only reads of a fleet at least
    ``MIN_BUSY_SHARE`` busy. That measurement is weighed against the estimate by inverse variance: the estimate's
    is ``CAPACITY_PRIOR_SD``, the measurement's the standard error of the mean busy share of its gauge reads (the
    rates, averages over minutes, are far steadier than an instant gauge). None (the estimate alone) until
    ``MIN_READS`` reads count.
    """
    span = max(CAPACITY_SPAN_S, horizon_s)
    gauged = [(read, busy) for read in reads if now - read.at <= span + rate_window_s
              and (busy := busy_replicas(read, max_num_seqs)) is not None]
    work = busy_total = busy_sum = ready_sum = 0.0
    counted = start = 0
    for end, (read, busy) in enumerate(gauged):
        busy_sum, ready_sum = busy_sum + busy, ready_sum + read.ready_replicas
        while gauged[start][0].at <= read.at - rate_window_s:
            busy_sum, ready_sum = busy_sum - gauged[start][1], ready_sum - gauged[start][0].ready_replicas
            start += 1
        if now - read.at <= span and busy_sum > 0 and busy_sum >= MIN_BUSY_SHARE * ready_sum:
            work += float(read.tokens_per_second)  # type: ignore[arg-type]
            busy_total += busy_sum / (end - start + 1)  # the window's mean busy replicas
            counted += 1
    if counted < MIN_READS:
        return None
    measured = work / busy_total
    shares = [busy / read.ready_replicas for read, busy in gauged if now - read.at <= span]
    mean_share = sum(shares) / len(shares)
    relative_variance = sum((x - mean_share) ** 2 for x in shares) / (len(shares) - 1) / len(shares) / mean_share ** 2
    variance = relative_variance * measured ** 2
    prior = (CAPACITY_PRIOR_SD * estimate) ** 2
    return measured if variance == 0 else (estimate / prior + measured / variance) / (1 / prior + 1 / variance)
