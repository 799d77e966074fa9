"""Status derivation for every kind (pure): conditions and figures from what a reconcile observed."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from neuroscale.conditions import ConditionUpdate, derive_ready, merge_conditions


def spec_problem_status(
    current: dict[str, Any], problem: ConditionUpdate, *, generation: int | None, now: datetime
) -> dict[str, Any]:
    """The status when the spec cannot work: the problem condition and a Ready that repeats it.

    Everything else stays as it was: what is running keeps running and its last known figures stay true.
    """
    ready = derive_ready([problem], positive=(problem.type,))
    conditions = merge_conditions(current.get("conditions"), [problem, ready], generation=generation, now=now)
    return {**current, "conditions": conditions, **({"observedGeneration": generation} if generation is not None else {})}
