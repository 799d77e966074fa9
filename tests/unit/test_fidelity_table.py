"""Covers the README's fidelity table: it is what tests/support/fidelity.py generates from the published
configurations, and every configuration either matches what sizing picks on its own or says why not."""

from __future__ import annotations

from tests.support.fidelity import README, load, update


def test_readme_table_is_current() -> None:
    text = README.read_text()
    assert update(text) == text, "run `python -m tests.support.fidelity --write`"


def test_every_configuration_matches_or_is_explained() -> None:
    rows = load()
    assert len(rows) >= 10
    for row in rows:
        assert row.matches() != bool(row.why_not), (row.source, row.picked(), row.documented())


def test_trn2_gets_the_plugin_image_and_the_others_the_nxdi_image() -> None:
    for row in load():
        tag = row.rendered().split("`")[1]
        assert tag.startswith("0.24.") if row.instance.startswith("trn2") else tag.startswith("0.16."), row.source
