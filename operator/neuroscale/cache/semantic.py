"""Semantic matching: embed the last user turn, compare it with candidates of the same scope and context, then verify.

Candidates come from one bucket per (scope, context hash), where the context is everything in the request except the
last user turn. So similarity only ever decides between requests that are otherwise identical and in the same tenant
scope. Without a vector index the backend keeps the newest `semantic_bucket_size` entries per bucket and returns them
in one round trip, compared here by a numpy dot product (older paraphrases beyond the bucket size are not found);
with one (Redis with vector search, vector_index.py) the backend returns the nearest entries of the whole bucket
with their similarity, and only the verifier runs here.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from neuroscale.cache.backends import Neighbour
from neuroscale.cache.embedders import Embedder, build_embedder
from neuroscale.cache.settings import CacheSettings
from neuroscale.cache.verifier import Verdict, same_question

_HEADER = struct.Struct("<I")


@dataclass(frozen=True)
class Match:
    key: str
    similarity: float
    question: str


def pack_entry(vector: np.ndarray, question: str) -> bytes:
    unit = np.asarray(vector, dtype="<f4")
    return _HEADER.pack(unit.shape[0]) + unit.tobytes() + question.encode("utf-8")


def unpack_entry(blob: bytes) -> tuple[np.ndarray, str]:
    (dim,) = _HEADER.unpack_from(blob)
    start = _HEADER.size
    end = start + 4 * dim
    return np.frombuffer(blob[start:end], dtype="<f4"), blob[end:].decode("utf-8")


class SemanticMatcher:
    """Finds cached questions that ask the same thing: cosine similarity >= threshold, then the verifier agrees.

    `verify` returns a bool or a verifier.Verdict. A Verdict that refuses only because one question has a word or two
    more than the other carries both forms of the longer question; with `ablation_similarity` set, the match still
    stands when the embeddings of those two forms are at least that similar (the words carry little meaning).
    """

    def __init__(
        self,
        embedder: Embedder,
        *,
        threshold: float,
        verify: Callable[[str, str], bool | Verdict] | None = None,
        ablation_similarity: float | None = None,
        memo_size: int = 1024,
    ) -> None:
        self._embedder = embedder
        self._threshold = threshold
        self._verify = verify
        self._ablation_similarity = ablation_similarity
        # The question embedded at lookup is embedded again at store after a miss; remembering it saves that.
        self._memo: OrderedDict[str, np.ndarray] = OrderedDict()
        self._memo_size = memo_size

    @classmethod
    def from_settings(cls, settings: CacheSettings, embedder: Embedder | None = None) -> SemanticMatcher:
        return cls(embedder or build_embedder(settings.embedder), threshold=settings.similarity_threshold,
                   verify=same_question if settings.verifier else None,
                   ablation_similarity=settings.ablation_similarity if settings.verifier else None)

    async def embed(self, question: str) -> np.ndarray:
        vector, _ = await self._embed_with(question, [])
        return vector

    async def _embed_with(self, question: str, also: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The unit vector of `question`, and those of `also` embedded in the same model call."""
        cached = self._memo.get(question)
        if cached is not None and not also:
            self._memo.move_to_end(question)
            return cached, {}
        rows = await self._embedder.embed([question, *also])
        vector, *rest = (_unit(row) for row in rows)
        if self._memo_size > 0:
            self._memo[question] = vector
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
        return vector, dict(zip(also, rest))

    async def encode_entry(self, question: str) -> bytes:
        return pack_entry(await self.embed(question), question)

    async def matches(self, question: str, candidates: list[tuple[str, bytes]]) -> list[Match]:
        """Verified matches above the threshold, most similar first (the caller takes the first still stored).

        The candidates are known before the question is embedded, so the texts the embedding check needs ride in
        the same model call as the question: one call per lookup, however many candidates."""
        if not candidates:
            return []
        unpacked = [(key, *unpack_entry(blob)) for key, blob in candidates]
        verdicts = {text: self._verdict(question, text) for _, _, text in unpacked}
        query, ablated = await self._embed_with(question, _ablation_texts(verdicts.values()))
        keys, questions, vectors = [], [], []
        for key, vector, text in unpacked:
            if vector.shape == query.shape:
                keys.append(key)
                questions.append(text)
                vectors.append(vector)
        if not vectors:
            return []
        similarities = np.stack(vectors) @ query
        order = np.argsort(-similarities)
        return await self.select(question, [Neighbour(keys[i], float(similarities[i]), questions[i]) for i in order],
                                 verdicts, ablated)

    async def select(self, question: str, nearest: list[Neighbour], verdicts: dict[str, Verdict | bool] | None = None,
                     ablated: dict[str, np.ndarray] | None = None) -> list[Match]:
        """Of candidates sorted most similar first, those above the threshold that the verifier accepts. The texts
        the embedding check needs and `verdicts` did not bring are embedded in one more model call."""
        above = [c for c in nearest if c.similarity >= self._threshold]
        verdicts = dict(verdicts or {})
        for candidate in above:
            if candidate.question not in verdicts:
                verdicts[candidate.question] = self._verdict(question, candidate.question)
        ablated = dict(ablated or {})
        missing = [t for t in _ablation_texts(verdicts[c.question] for c in above) if t not in ablated]
        if missing:
            rows = await self._embedder.embed(missing)
            ablated.update((text, _unit(row)) for text, row in zip(missing, rows))
        found = []
        for candidate in above:
            verdict = verdicts[candidate.question]
            if isinstance(verdict, bool):
                same = verdict
            elif verdict.same or verdict.ablation is None or self._ablation_similarity is None:
                same = verdict.same
            else:
                full, reduced = verdict.ablation
                # Past the per-call limit of pairs, a candidate's texts were not embedded: it does not match.
                same = (full in ablated and reduced in ablated
                        and float(ablated[full] @ ablated[reduced]) >= self._ablation_similarity)
            if same:
                found.append(Match(candidate.key, candidate.similarity, candidate.question))
        return found

    def _verdict(self, question: str, cached: str) -> Verdict | bool:
        if self._verify is None:
            return True
        verdict = self._verify(question, cached)
        if not isinstance(verdict, bool) and (verdict.ablation is None or self._ablation_similarity is None):
            return verdict.same
        return verdict

    async def close(self) -> None:
        await self._embedder.close()



def _unit(row: list[float]) -> np.ndarray:
    vector = np.asarray(row, dtype=np.float32)
    norm = float(np.linalg.norm(vector))
    if not np.isfinite(norm) or norm == 0.0:
        raise ValueError("embedder returned a zero or non-finite vector")
    return vector / norm


def _ablation_texts(verdicts: Iterable[Verdict | bool], limit: int = 8) -> list[str]:
    """The texts the embedding check needs for these verdicts, each once; `limit` pairs bound one model call."""
    texts: dict[str, None] = {}
    pairs = 0
    for verdict in verdicts:
        if isinstance(verdict, Verdict) and verdict.ablation is not None and pairs < limit:
            texts.update(dict.fromkeys(verdict.ablation))
            pairs += 1
    return list(texts)
