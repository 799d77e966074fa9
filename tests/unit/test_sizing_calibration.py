"""Covers the throughput model against AWS's published Neuron figures (tests/data/neuron_published_throughput.yaml):
every row's throughput within the model's stated uncertainty, the calibration better than the model it replaced on
the rows that model got most wrong (small models at batch 1, trn2, 70B at batch 4), prefill costing time (a long
prompt serves fewer tokens/s than a short one), and every row naming a known source."""

from __future__ import annotations

import pytest

from neuroscale.sizing.throughput import RELATIVE_UNCERTAINTY
from tests.support.neuron_published import load

SOURCES, ROWS = load()


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_each_published_row_is_within_the_stated_uncertainty(row) -> None:
    est = row.estimate()
    assert est.low <= row.tokens_per_second <= est.high, (row.id, est.tokens_per_second, row.tokens_per_second)
    assert abs(row.error()) <= RELATIVE_UNCERTAINTY


def test_the_calibration_fixes_what_the_old_model_got_wrong() -> None:
    worst_before = [r for r in ROWS if abs(r.before / r.tokens_per_second - 1) > 0.25]
    assert len(worst_before) >= 6
    for row in worst_before:
        assert abs(row.error()) < abs(row.before / row.tokens_per_second - 1), row.id
    mean_before = sum(abs(r.before / r.tokens_per_second - 1) for r in ROWS) / len(ROWS)
    mean_now = sum(abs(r.error()) for r in ROWS) / len(ROWS)
    assert mean_now < 0.6 * mean_before


def test_time_per_output_token_tracks_the_published_one() -> None:
    timed = [r for r in ROWS if r.tpot_ms is not None]
    assert len(timed) >= 20
    for row in timed:
        ratio = row.estimate().time_per_output_token_seconds * 1e3 / row.tpot_ms
        assert 1 / 1.5 < ratio < 1.5, (row.id, ratio)


def test_long_prompts_cost_throughput() -> None:
    (short,) = [r for r in ROWS if r.id == "inf2-llama3-8b-int8-tp24-b8-in128"]
    (long,) = [r for r in ROWS if r.id == "inf2-llama3-8b-int8-tp24-b8-in2048"]
    assert long.tokens_per_second < short.tokens_per_second
    assert long.estimate().tokens_per_second < short.estimate().tokens_per_second
    assert long.estimate().time_to_first_token_seconds > 5 * short.estimate().time_to_first_token_seconds


def test_every_row_names_its_source() -> None:
    assert {r.source for r in ROWS} == set(SOURCES)
    assert len({r.id for r in ROWS}) == len(ROWS)
