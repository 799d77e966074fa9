"""The metrics hook the cache reports into; the gateway owns the Prometheus counters behind it."""

from __future__ import annotations

from typing import Literal, Protocol

Mode = Literal["exact", "semantic"]
HitKind = Literal["exact", "semantic"]


class CacheMetrics(Protocol):
    """Callbacks the cache makes; `mode` is the configured cache mode, `kind` how a hit was found.

    An error talking to the backend or the embedder is reported as a miss (the request goes upstream).
    """

    def hit(self, mode: Mode, kind: HitKind) -> None: ...

    def miss(self, mode: Mode) -> None: ...

    def eviction(self, mode: Mode) -> None: ...


class NoMetrics:
    """Used when the caller passes no hook."""

    def hit(self, mode: Mode, kind: HitKind) -> None:
        return None

    def miss(self, mode: Mode) -> None:
        return None

    def eviction(self, mode: Mode) -> None:
        return None
