"""Canonical Kubernetes quantities.

Covers: the API server's normalization (largest exact suffix, binary vs decimal format kept, milli-units for
fractions), idempotence (a canonical value stays as it is, so a resync finds no drift), value preservation, and a
clear error for malformed input.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuroscale.render.quantities import canonical_quantity, gibibytes, parse_quantity


@pytest.mark.parametrize(
    ("given_text", "canonical"),
    [
        ("1024Mi", "1Gi"),
        ("1.5Gi", "1536Mi"),
        ("0.5Gi", "512Mi"),
        ("100Gi", "100Gi"),
        ("1000m", "1"),
        ("1500m", "1500m"),
        ("0.5", "500m"),
        ("28", "28"),
        ("2000M", "2G"),
        ("0", "0"),
        ("1536", "1536"),
    ],
)
def test_normalizes_like_the_api_server(given_text: str, canonical: str):
    assert canonical_quantity(given_text) == canonical


@pytest.mark.parametrize("bad", ["", "1.5.0", "-1", "10 Gi", "1e3", "Gi", "abc"])
def test_malformed_quantities_are_refused_with_an_example(bad: str):
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        canonical_quantity(bad)


def test_gibibytes():
    assert gibibytes(1024) == "1Ti"
    assert gibibytes(10) == "10Gi"


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["", "m", "k", "M", "G", "Ki", "Mi", "Gi", "Ti"]))
def test_canonical_form_is_idempotent_and_keeps_the_value(number: int, suffix: str):
    text = f"{number}{suffix}"
    canonical = canonical_quantity(text)
    assert canonical_quantity(canonical) == canonical
    assert parse_quantity(canonical)[0] == parse_quantity(text)[0]


@given(st.decimals(min_value=Decimal("0.001"), max_value=Decimal(10**6), places=3))
def test_decimal_fractions_round_trip(value: Decimal):
    canonical = canonical_quantity(str(value))
    assert parse_quantity(canonical)[0] == value
