"""Evaluate semantic matching on labelled question pairs: hit rate on paraphrases, false-hit rate on the rest.

A pair is (cached question, incoming question, label "same"|"different", category). It counts as served from
cache when cosine similarity >= threshold and the configured check agrees: none, the verifier's rules, or the rules
with the embedding check for extra words (verifier.py, semantic.py). The model runs once per distinct text; the
sweep itself is arithmetic over those similarities.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuroscale.cache.verifier import same_question

LABELS = ("same", "different")


@dataclass(frozen=True)
class LabelledPair:
    cached: str
    query: str
    label: str
    category: str


# What verdict_scores gives a pair the rules accept outright: above any ablation similarity.
RULES_ACCEPT = 2.0


@dataclass(frozen=True)
class SweepRow:
    threshold: float
    check: str
    hits: int
    same_pairs: int
    false_hits: int
    different_pairs: int

    @property
    def hit_rate(self) -> float:
        return self.hits / self.same_pairs if self.same_pairs else 0.0

    @property
    def false_hit_rate(self) -> float:
        return self.false_hits / self.different_pairs if self.different_pairs else 0.0


def load_pairs(path: str | Path) -> list[LabelledPair]:
    """Read a JSONL file of {"cached", "query", "label", "category"} objects; a bad line names its number."""
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                pair = LabelledPair(str(row["cached"]), str(row["query"]), str(row["label"]), str(row.get("category", "")))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}:{number}: expected a JSON object with cached, query, label ({exc})") from exc
            if pair.label not in LABELS:
                raise ValueError(f"{path}:{number}: label must be one of {LABELS}, got {pair.label!r}")
            pairs.append(pair)
    return pairs


def pair_similarities(pairs: Sequence[LabelledPair], embed: Callable[[list[str]], Sequence[Sequence[float]]]) -> np.ndarray:
    texts = sorted({t for p in pairs for t in (p.cached, p.query)})
    vectors = np.asarray(embed(texts), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = {text: i for i, text in enumerate(texts)}
    return np.array([float(vectors[index[p.cached]] @ vectors[index[p.query]]) for p in pairs])


def verdicts(pairs: Sequence[LabelledPair]) -> np.ndarray:
    """The rules alone, per pair."""
    return np.array([same_question(p.query, p.cached).same for p in pairs])


def verdict_scores(pairs: Sequence[LabelledPair], embed: Callable[[list[str]], Sequence[Sequence[float]]]) -> np.ndarray:
    """Per pair: RULES_ACCEPT when the rules accept; the ablation cosine when only extra words stand in the way (the
    pair then passes at any ablation_similarity up to it); 0 when the rules refuse outright."""
    found = [same_question(p.query, p.cached) for p in pairs]
    texts = sorted({t for v in found if v.ablation for t in v.ablation})
    vectors = np.asarray(embed(texts), dtype=np.float32) if texts else np.zeros((0, 1), dtype=np.float32)
    if texts:
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = {text: i for i, text in enumerate(texts)}
    scores = []
    for verdict in found:
        if verdict.same:
            scores.append(RULES_ACCEPT)
        elif verdict.ablation is None:
            scores.append(0.0)
        else:
            full, reduced = verdict.ablation
            scores.append(float(vectors[index[full]] @ vectors[index[reduced]]))
    return np.array(scores)


def sweep(
    pairs: Sequence[LabelledPair], similarities: np.ndarray, checks: dict[str, np.ndarray | None],
    thresholds: Iterable[float],
) -> list[SweepRow]:
    """One row per (check, threshold); a check is a boolean array of pairs it accepts, or None for no check."""
    same = np.array([p.label == "same" for p in pairs])
    rows = []
    thresholds = list(thresholds)
    for name, accepted in checks.items():
        for threshold in thresholds:
            served = similarities >= threshold
            if accepted is not None:
                served &= accepted
            rows.append(SweepRow(round(float(threshold), 4), name, int((served & same).sum()), int(same.sum()),
                                 int((served & ~same).sum()), int((~same).sum())))
    return rows


def by_category(pairs: Sequence[LabelledPair], similarities: np.ndarray, accepted: np.ndarray, threshold: float) -> dict[str, tuple[int, int]]:
    """Category -> (served, total) at one threshold with one check."""
    out: dict[str, tuple[int, int]] = {}
    for pair, similarity, ok in zip(pairs, similarities, accepted):
        served, total = out.get(pair.category, (0, 0))
        out[pair.category] = (served + int(bool(similarity >= threshold and ok)), total + 1)
    return out


def format_sweep(rows: Sequence[SweepRow], title: str) -> str:
    """A table: one line per threshold, hit% / false-hit% for each check."""
    checks = list(dict.fromkeys(r.check for r in rows))
    by = {(r.check, r.threshold): r for r in rows}
    header = f"{'threshold':>9}" + "".join(f"  {name + ' hit% / false%':>30}" for name in checks)
    lines = [title, header]
    for threshold in sorted({r.threshold for r in rows}):
        cells = []
        for name in checks:
            row = by[(name, threshold)]
            cells.append(f"  {f'{100 * row.hit_rate:5.1f} / {100 * row.false_hit_rate:4.1f}':>30}")
        lines.append(f"{threshold:>9.2f}" + "".join(cells))
    return "\n".join(lines)
