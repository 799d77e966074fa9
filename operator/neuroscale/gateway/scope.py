"""Cache isolation scope: which callers may share cached answers.

scope = sha256(authenticated tenant + NUL + key), hex, where the key part is empty unless the cascade authenticates
nobody (`auth.mode: none`): then callers presenting different bearer keys still never see each other's answers,
and callers without a key share one scope. Nothing a client sends besides a key it holds chooses the scope.
Requests steered with tier headers get a suffix, so an answer pinned to one tier is never replayed to a request
that asked for another. The raw key never leaves this function.
"""

from __future__ import annotations

import hashlib


def cache_scope(tenant: str, unverified_key: str | None = None, tier_hints: tuple[str | None, ...] = ()) -> str:
    digest = hashlib.sha256(f"{tenant}\x00{unverified_key or ''}".encode()).hexdigest()
    if not any(tier_hints):
        return digest
    return digest + ":" + ">".join((hint or "").strip() for hint in tier_hints)
