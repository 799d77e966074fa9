"""A cache metrics hook that records its calls, so tests can assert hits, misses and evictions."""

from __future__ import annotations


class RecordingMetrics:
    def __init__(self) -> None:
        self.calls: list[tuple[str, ...]] = []

    def hit(self, mode: str, kind: str) -> None:
        self.calls.append(("hit", mode, kind))

    def miss(self, mode: str) -> None:
        self.calls.append(("miss", mode))

    def eviction(self, mode: str) -> None:
        self.calls.append(("eviction", mode))
