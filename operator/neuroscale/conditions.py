"""Status conditions for every kind: set one, keep lastTransitionTime stable, derive Ready from the others."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Literal

Status = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class ConditionUpdate:
    """One condition as a reconcile computed it, before timestamps are applied."""

    type: str
    status: Status
    reason: str
    message: str = ""


def rfc3339(now: datetime) -> str:
    return now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_conditions(
    existing: Iterable[dict[str, Any]] | None,
    updates: Iterable[ConditionUpdate],
    *,
    generation: int | None,
    now: datetime,
) -> list[dict[str, Any]]:
    """Apply updates to the existing condition list.

    lastTransitionTime changes only when status flips, so a resync that finds nothing new produces an identical
    list (and therefore no API write). Conditions not mentioned in `updates` are kept as they were.
    """
    by_type = {c["type"]: dict(c) for c in existing or ()}
    for update in updates:
        previous = by_type.get(update.type)
        transitioned = previous is None or previous.get("status") != update.status
        condition = {
            "type": update.type,
            "status": update.status,
            "reason": update.reason,
            "message": update.message,
            "lastTransitionTime": rfc3339(now) if transitioned else previous["lastTransitionTime"],
        }
        if generation is not None:
            condition["observedGeneration"] = generation
        by_type[update.type] = condition
    return sorted(by_type.values(), key=lambda c: c["type"])


def derive_ready(
    updates: Iterable[ConditionUpdate], *, positive: tuple[str, ...], negative: tuple[str, ...] = ()
) -> ConditionUpdate:
    """Ready is True only when every positive condition is True and no negative one (e.g. Degraded) is.

    The first condition that blocks readiness lends Ready its reason and message, so `kubectl get` shows why.
    """
    by_type = {u.type: u for u in updates}
    for name in positive:
        cond = by_type.get(name)
        if cond is None or cond.status != "True":
            if cond is None:
                return ConditionUpdate("Ready", "Unknown", "Pending", f"{name} not yet known")
            return ConditionUpdate("Ready", "False" if cond.status == "False" else "Unknown", cond.reason, cond.message)
    for name in negative:
        cond = by_type.get(name)
        if cond is not None and cond.status == "True":
            return ConditionUpdate("Ready", "False", cond.reason, cond.message)
    return ConditionUpdate("Ready", "True", "Ready", "All conditions are met")


def find(conditions: Iterable[dict[str, Any]] | None, type_: str) -> dict[str, Any] | None:
    return next((c for c in conditions or () if c.get("type") == type_), None)
