"""The first-come-first-served fluid queue every schedule is scored with: backlog and queueing delay per step."""

from __future__ import annotations

import numpy as np

__all__ = ["fluid_backlog", "queue_waits"]


def fluid_backlog(work: np.ndarray, capacity: np.ndarray, step_s: float) -> np.ndarray:
    """Queued work after each step of a first-come-first-served fluid queue (Lindley's recursion, vectorized)."""
    net = np.concatenate(([0.0], np.cumsum((work - capacity) * step_s)))
    return (net - np.minimum.accumulate(net))[1:]


def queue_waits(work: np.ndarray, capacity: np.ndarray, step_s: float) -> np.ndarray:
    """Seconds the last unit of each step's work waits after the step ends until it is served (0: served in it).

    Service is work-conserving at ``capacity`` per second (uniform within a step); work still queued when the
    trace ends is served at the last step's capacity (forever, if that is zero).
    """
    backlog = fluid_backlog(work, capacity, step_s)
    arrived = np.concatenate(([0.0], np.cumsum(work * step_s)))
    served = arrived - np.concatenate(([0.0], backlog))
    target = arrived[1:] - 1e-9 * np.maximum(arrived[1:], 1.0)
    k = np.searchsorted(served, target, side="left")  # first boundary with everything up to the step served
    steps = len(work)
    inside = np.minimum(k, steps)
    before = served[np.maximum(inside - 1, 0)]
    gained = served[inside] - before
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(gained > 0, (target - before) / gained, 1.0)
    finish = (inside - 1 + np.clip(fraction, 0.0, 1.0)) * step_s
    last_rate = float(capacity[-1]) if steps else 0.0
    after = steps * step_s + np.where(last_rate > 0, (target - served[-1]) / max(last_rate, 1e-300), np.inf)
    finish = np.where(k > steps, after, finish)
    return np.maximum(finish - (np.arange(steps) + 1) * step_s, 0.0)
