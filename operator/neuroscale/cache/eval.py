"""Evaluate semantic matching on labelled question pairs: hit rate on paraphrases, false-hit rate on the rest.

A pair is (cached question, incoming question, label "same"|"different", category). It counts as served from
cache when cosine similarity >= threshold and, with the verifier on, the verifier agrees. The model runs once per
distinct text; the sweep itself is arithmetic over those similarities.
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


@dataclass(frozen=True)
class SweepRow:
    threshold: float
    verifier: bool
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
    return np.array([same_question(p.query, p.cached).same for p in pairs])


def sweep(
    pairs: Sequence[LabelledPair], similarities: np.ndarray, verified: np.ndarray, thresholds: Iterable[float]
) -> list[SweepRow]:
    same = np.array([p.label == "same" for p in pairs])
    rows = []
    for verifier in (False, True):
        for threshold in thresholds:
            served = similarities >= threshold
            if verifier:
                served &= verified
            rows.append(SweepRow(round(float(threshold), 4), verifier, int((served & same).sum()), int(same.sum()),
                                 int((served & ~same).sum()), int((~same).sum())))
    return rows


def by_category(pairs: Sequence[LabelledPair], similarities: np.ndarray, verified: np.ndarray, threshold: float) -> dict[str, tuple[int, int]]:
    """Category -> (served, total) at one threshold with the verifier on."""
    out: dict[str, tuple[int, int]] = {}
    for pair, similarity, ok in zip(pairs, similarities, verified):
        served, total = out.get(pair.category, (0, 0))
        out[pair.category] = (served + int(bool(similarity >= threshold and ok)), total + 1)
    return out


def format_sweep(rows: Sequence[SweepRow], title: str) -> str:
    lines = [title, f"{'threshold':>9}  {'hit% (no verifier)':>18}  {'false% (no verifier)':>20}  {'hit% (verifier)':>15}  {'false% (verifier)':>17}"]
    plain = {r.threshold: r for r in rows if not r.verifier}
    checked = {r.threshold: r for r in rows if r.verifier}
    for threshold in sorted(plain):
        a, b = plain[threshold], checked[threshold]
        lines.append(f"{threshold:>9.2f}  {100 * a.hit_rate:>18.1f}  {100 * a.false_hit_rate:>20.1f}  {100 * b.hit_rate:>15.1f}  {100 * b.false_hit_rate:>17.1f}")
    return "\n".join(lines)
