"""A checkpoint an init container puts on the models volume before the engine starts (besides the model itself)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Download:
    """`source` (hf:// or s3://, at `revision` for the Hub) copied to `target` by the init container `container`."""

    container: str
    source: str
    revision: str | None
    target: str
