"""The queue-wait budget of an autoscaling SLO (autoscale/slo.py).

Covers: no SLO → the default; a queue-wait SLO as given; a TTFT SLO less the mean prompt's prefill at the replica's
prefill rate; both SLOs → the tighter; an unknown (infinite) prefill rate deducting nothing; a TTFT that prefill
uses up → the floor and a problem that names the figures; over random inputs (hypothesis): the budget is positive,
never above either SLO (unless floored), and floored exactly when a problem is reported; bad inputs refused.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuroscale.autoscale.slo import DEFAULT_QUEUE_WAIT_S, MIN_QUEUE_WAIT_S, queue_wait_budget


def test_without_an_slo_the_default_applies() -> None:
    budget = queue_wait_budget(None, None, 1024, 5000.0)
    assert (budget.seconds, budget.prefill_s, budget.problem) == (DEFAULT_QUEUE_WAIT_S, 0.0, None)


def test_a_queue_wait_slo_is_the_budget() -> None:
    assert queue_wait_budget(4.0, None, 1024, 5000.0).seconds == 4.0


def test_a_ttft_slo_leaves_what_the_mean_prompts_prefill_does_not_take() -> None:
    # 2,000 prompt tokens at 4,000 tokens/s: 0.5 s of the 3 s go to prefill.
    budget = queue_wait_budget(None, 3.0, 2000, 4000.0)
    assert budget.prefill_s == pytest.approx(0.5)
    assert budget.seconds == pytest.approx(2.5)
    assert budget.problem is None


def test_with_both_slos_the_tighter_budget_wins() -> None:
    assert queue_wait_budget(1.0, 3.0, 2000, 4000.0).seconds == 1.0
    assert queue_wait_budget(5.0, 3.0, 2000, 4000.0).seconds == pytest.approx(2.5)


def test_an_unknown_prefill_rate_deducts_nothing() -> None:
    budget = queue_wait_budget(None, 3.0, 2000, math.inf)
    assert (budget.seconds, budget.prefill_s, budget.problem) == (3.0, 0.0, None)


def test_a_ttft_that_prefill_uses_up_gets_the_floor_and_says_why() -> None:
    # 8,000 tokens at 4,000 tokens/s take 2 s, past a 1 s TTFT.
    budget = queue_wait_budget(None, 1.0, 8000, 4000.0)
    assert budget.seconds == MIN_QUEUE_WAIT_S
    assert budget.prefill_s == pytest.approx(2.0)
    assert budget.problem is not None
    assert "timeToFirstTokenSeconds 1" in budget.problem and "8000-token prompt" in budget.problem
    assert "~2s" in budget.problem and "4000 tokens/s" in budget.problem


@given(
    queue_wait=st.none() | st.floats(0.01, 3600),
    ttft=st.floats(0.01, 3600),
    prompt=st.integers(1, 131072),
    prefill_rate=st.floats(1.0, 1e7),
)
def test_the_budget_is_positive_within_the_slos_and_floored_only_with_a_problem(
    queue_wait: float | None, ttft: float, prompt: int, prefill_rate: float
) -> None:
    budget = queue_wait_budget(queue_wait, ttft, prompt, prefill_rate)
    assert budget.seconds > 0
    if queue_wait is not None:
        assert budget.seconds <= queue_wait
    assert budget.seconds <= max(MIN_QUEUE_WAIT_S, ttft - budget.prefill_s) + 1e-12
    assert (budget.problem is not None) == (ttft - prompt / prefill_rate < MIN_QUEUE_WAIT_S)


@pytest.mark.parametrize(("prompt", "rate"), [(0, 1000.0), (100, 0.0), (100, -1.0)])
def test_bad_inputs_are_refused(prompt: int, rate: float) -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        queue_wait_budget(None, 2.0, prompt, rate)
