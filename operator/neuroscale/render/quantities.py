"""Kubernetes resource quantities in the canonical form the API server writes back, so a resync finds no drift."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"m": Decimal("0.001"), "": Decimal(1), "k": Decimal(10**3), "M": Decimal(10**6),
            "G": Decimal(10**9), "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18)}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?$")


def parse_quantity(text: str) -> tuple[Decimal, bool]:
    """The value in base units and whether it was written with a binary suffix; ValueError when malformed."""
    match = _QUANTITY.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 28, 500m, 100Gi)")
    number, suffix = match.group(1), match.group(2) or ""
    try:
        value = Decimal(number)
    except InvalidOperation:
        raise ValueError(f"{text!r} is not a Kubernetes quantity (e.g. 28, 500m, 100Gi)") from None
    if suffix in _BINARY:
        return value * _BINARY[suffix], True
    return value * _DECIMAL[suffix], False


def canonical_quantity(text: str) -> str:
    """The quantity as the API server normalizes it: `1024Mi` → `1Gi`, `0.5` → `500m`, `1.5Gi` → `1536Mi`.

    Like the API server, the format (binary or decimal suffix) is kept and the largest suffix that leaves an
    integer is chosen; values below 1 in binary format fall back to decimal milli-units.
    """
    value, binary = parse_quantity(text)
    if value == 0:
        return "0"
    if binary and value == value.to_integral_value():
        for suffix, factor in reversed(_BINARY.items()):
            if value % factor == 0:
                return f"{value // factor}{suffix}"
        return str(int(value))
    for suffix, factor in sorted(_DECIMAL.items(), key=lambda item: item[1], reverse=True):
        scaled = value / factor
        if scaled == scaled.to_integral_value():
            return f"{int(scaled)}{suffix}"
    # Finer than a milli-unit: the API server rounds up to the next milli-unit.
    return f"{int((value / _DECIMAL['m']).to_integral_value(rounding='ROUND_CEILING'))}m"


def gibibytes(count: int) -> str:
    """A whole number of GiB in canonical form."""
    return canonical_quantity(f"{count}Gi")
