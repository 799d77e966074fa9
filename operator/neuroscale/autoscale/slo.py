"""The queue-wait budget an autoscaling SLO leaves once a request's own prefill is paid (pure)."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["DEFAULT_QUEUE_WAIT_S", "MIN_QUEUE_WAIT_S", "QueueBudget", "queue_wait_budget"]

# The queue wait kept when the spec sets no SLO.
DEFAULT_QUEUE_WAIT_S = 10.0
# The smallest budget handed to the policy: it needs a positive one, and a TTFT that prefill alone uses up still
# asks for the shortest queue the replicas can keep rather than for nothing.
MIN_QUEUE_WAIT_S = 0.1


@dataclass(frozen=True)
class QueueBudget:
    """How long a request may queue; ``prefill_s`` is what a TTFT SLO set aside for the mean prompt's prefill,
    ``problem`` says why the SLO cannot be met by adding replicas (prefill alone exceeds it)."""

    seconds: float
    prefill_s: float = 0.0
    problem: str | None = None


def queue_wait_budget(
    queue_wait_s: float | None, ttft_s: float | None, mean_prompt_tokens: int, prefill_tokens_per_s: float
) -> QueueBudget:
    """The queue wait that keeps both SLOs: ``queue_wait_s`` as given, and a time to first token ``ttft_s`` less the
    prefill of a mean prompt at the replica's prefill rate (the first token comes after queueing and prefill).

    Never below `MIN_QUEUE_WAIT_S`; without either SLO, `DEFAULT_QUEUE_WAIT_S`.
    """
    if ttft_s is None:
        return QueueBudget(queue_wait_s if queue_wait_s is not None else DEFAULT_QUEUE_WAIT_S)
    if not (mean_prompt_tokens > 0 and prefill_tokens_per_s > 0):
        raise ValueError("mean_prompt_tokens and prefill_tokens_per_s must be > 0")
    prefill_s = mean_prompt_tokens / prefill_tokens_per_s if math.isfinite(prefill_tokens_per_s) else 0.0
    left = ttft_s - prefill_s
    problem = None
    if left < MIN_QUEUE_WAIT_S:
        problem = (f"timeToFirstTokenSeconds {ttft_s:g} leaves no queue wait: a {mean_prompt_tokens}-token prompt "
                   f"takes ~{prefill_s:.2g}s to prefill at the estimated {prefill_tokens_per_s:.0f} tokens/s, so "
                   "more replicas cannot meet it (a larger tensor-parallel degree or shorter prompts can)")
    seconds = max(MIN_QUEUE_WAIT_S, left)
    if queue_wait_s is not None:
        seconds = min(seconds, queue_wait_s)
    return QueueBudget(seconds, prefill_s, problem)
