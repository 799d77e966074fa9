"""What-if: a gateway that sends work past a ModelDeployment to the next tier whenever its queue would break the SLO.

The gateway today bridges only a tier scaled to zero (`gateway/warmup.py`); this models overflow bridging for any
fleet, to measure what it would be worth (tests/bench/bench_bridge.py). Per step of a schedule of ready replicas,
work joins the fleet's first-come-first-served queue only while the queue stays within what the ready replicas
serve in the SLO (so admitted work waits at most the SLO while they stay), and the rest goes to the bridge tier at
once, priced per prompt and per generated token. Pure: arrays in, figures out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["BridgeOutcome", "overflow_bridge"]


@dataclass(frozen=True)
class BridgeOutcome:
    """The bridged share of the work, the prompt and generated tokens and dollars the bridge tier was paid for, and
    the admitted work's longest queueing delay."""

    bridged_work_fraction: float
    bridged_prompt_tokens: float
    bridged_generated_tokens: float
    bridge_cost: float
    max_admitted_wait_s: float


def overflow_bridge(work: np.ndarray, generated: np.ndarray, prompt: np.ndarray, ready: np.ndarray,
                    capacity_tokens_per_s: float, slo_s: float, step_s: float, *, prompt_price_per_million: float,
                    generated_price_per_million: float) -> BridgeOutcome:
    """Replay ``work`` (generated-token equivalents per second) against ``ready`` replicas with overflow to a bridge.

    ``generated`` and ``prompt`` are the tokens per second the same work is made of: a step's bridged share of its
    work is billed that share of its tokens.
    """
    backlog = bridged_work = bridged_prompt = bridged_generated = longest = 0.0
    for arrived, made, asked, replicas in zip(work * step_s, generated * step_s, prompt * step_s, ready, strict=True):
        rate = float(replicas) * capacity_tokens_per_s
        served = rate * step_s
        # Admit while the backlog left after this step is at most what the ready fleet serves in the SLO.
        admitted = min(float(arrived), max(0.0, rate * slo_s + served - backlog))
        if arrived > 0 and admitted < arrived:
            share = (arrived - admitted) / arrived
            bridged_work += arrived - admitted
            bridged_generated += share * float(made)
            bridged_prompt += share * float(asked)
        backlog = max(0.0, backlog + admitted - served)
        if backlog > 0:
            longest = max(longest, backlog / rate if rate > 0 else float("inf"))
    total = float(np.sum(work)) * step_s
    cost = (bridged_prompt * prompt_price_per_million + bridged_generated * generated_price_per_million) / 1e6
    return BridgeOutcome(bridged_work_fraction=bridged_work / total if total > 0 else 0.0,
                         bridged_prompt_tokens=bridged_prompt, bridged_generated_tokens=bridged_generated,
                         bridge_cost=cost, max_admitted_wait_s=longest)
