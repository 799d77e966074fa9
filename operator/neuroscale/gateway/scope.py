"""Cache isolation scope: which callers may share cached answers.

scope = sha256(bearer API key + NUL + value of the configured tenant header), hex. Callers with different API keys,
or the same key with different tenant header values, never see each other's answers; callers without a key share
the anonymous scope of their tenant. Requests steered with tier headers get a suffix, so an answer pinned to one tier
is never replayed to a request that asked for another. The raw key never leaves this function.
"""

from __future__ import annotations

import hashlib


def cache_scope(authorization: str | None, tenant: str | None, tier_hints: tuple[str | None, ...] = ()) -> str:
    key = ""
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        key = credentials.strip() if scheme.lower() == "bearer" else authorization.strip()
    digest = hashlib.sha256(f"{key}\x00{tenant or ''}".encode()).hexdigest()
    if not any(tier_hints):
        return digest
    return digest + ":" + ">".join((hint or "").strip() for hint in tier_hints)
