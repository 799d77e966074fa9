"""Semantic candidates from a Redis vector index (RediSearch / Redis Stack / Valkey search): probe, create, query.

One index per cache (key prefix), embedding dimension and algorithm, over the hashes `<prefix>:v:{<scope>}:<key>`
with three fields: `vec` (FLOAT32, cosine distance), `ctx` (TAG: the context hash) and `q` (the question, returned,
not indexed). A lookup asks for the nearest entries whose `ctx` equals the request's context hash:
`(@ctx:{<hash>})=>[KNN k @vec $v]`. The context hash already includes the tenant scope (keys.py), so the one tag
filter keeps both tenants and conversations apart; a TAG filter on one shared index was chosen over an index per
scope because indexes are created by whichever gateway first needs them and are never garbage-collected, so one per
tenant would grow without bound, while RediSearch runs a selective filter as a brute-force pass over the few
matching entries and a broad one (one system prompt shared by most traffic) through the HNSW graph.

Limits: the index lives on one Redis; on a Redis Cluster the open-source search module indexes each shard alone, so
cluster mode keeps the bucket scan. Entries leave the index when Redis expires or evicts their hash.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

import redis.exceptions
from redis.commands.search.field import TagField, VectorField
from redis.commands.search.index_definition import IndexDefinition, IndexType
from redis.commands.search.query import Query

from neuroscale.cache.backends import Neighbour

log = logging.getLogger(__name__)

Algorithm = Literal["HNSW", "FLAT"]
# Nearest entries fetched per lookup; the matcher serves the first one above the threshold that the verifier accepts.
CANDIDATES = 8
# HNSW search breadth. At 100k entries of 384 dims (tests/bench/bench_cache.py), recall@1 of a paraphrase-like query
# was 83 % / 97 % / 100 % at 64 / 128 / 256 on uniformly random vectors (the hard case) and 100 % at all three on
# clustered ones, at a p50 of 1.4 / 1.7 / 3.1 ms on the hard case (RediSearch's default is 10).
EF_RUNTIME = 128


async def has_vector_search(client: Any) -> bool:
    """True when the server answers FT._LIST (Redis Stack, the search module, Valkey search, ElastiCache's)."""
    try:
        await client.execute_command("FT._LIST")
    except redis.exceptions.ResponseError:
        return False
    return True


class VectorIndex:
    """The index of one cache prefix. `ensure` creates it on first use for a dimension (idempotent across replicas)."""

    def __init__(self, client: Any, *, key_prefix: str, algorithm: Algorithm) -> None:
        self._client = client
        self._prefix = f"{key_prefix}:v:"
        self._base = f"{key_prefix}:vec:{algorithm.lower()}"
        self._algorithm = algorithm
        self._ready: set[int] = set()

    @property
    def key_prefix(self) -> str:
        return self._prefix

    def name(self, dim: int) -> str:
        return f"{self._base}:{dim}"

    async def ensure(self, dim: int) -> str:
        name = self.name(dim)
        if dim in self._ready:
            return name
        attributes = {"TYPE": "FLOAT32", "DIM": dim, "DISTANCE_METRIC": "COSINE"}
        # `q` stays out of the schema: RETURN reads any hash field, and indexing the text would cost for nothing.
        schema = [VectorField("vec", self._algorithm, attributes), TagField("ctx")]
        try:
            await self._client.ft(name).create_index(
                schema, definition=IndexDefinition(prefix=[self._prefix], index_type=IndexType.HASH)
            )
            log.info("created vector index %s (%s, %d dims) over %s*", name, self._algorithm, dim, self._prefix)
        except redis.exceptions.ResponseError as exc:
            if "already exists" not in str(exc).lower():
                raise
        self._ready.add(dim)
        return name

    async def nearest(self, context: str, vector: bytes, dim: int, k: int = CANDIDATES) -> list[Neighbour]:
        """The k entries of `context` nearest to `vector` (little-endian float32), most similar first."""
        name = await self.ensure(dim)
        breadth = f" EF_RUNTIME {max(EF_RUNTIME, k)}" if self._algorithm == "HNSW" else ""
        query = (
            Query(f"(@ctx:{{{context}}})=>[KNN {k} @vec $v{breadth} AS d]")
            .sort_by("d").return_fields("q", "d").paging(0, k).dialect(2)
        )
        try:
            result = await self._client.ft(name).search(query, query_params={"v": vector})
        except redis.exceptions.ResponseError as exc:
            if "no such index" not in str(exc).lower() and "unknown index" not in str(exc).lower():
                raise
            # Redis restarted (the operator's Redis keeps nothing) or was flushed: create the index again; the
            # hashes still there are indexed in the background, new ones as they are written.
            self._ready.discard(dim)
            await self.ensure(dim)
            return []
        # A query past the module's timeout (500 ms by default, policy "return") answers with partial documents:
        # those without a distance or question are skipped, not guessed at.
        return [Neighbour(_text(doc.id), 1.0 - float(doc.d), _text(doc.q)) for doc in result.docs
                if getattr(doc, "d", None) is not None and getattr(doc, "q", None) is not None]


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
