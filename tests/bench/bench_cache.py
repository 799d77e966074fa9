"""Benchmark for the response cache: the semantic threshold sweep (with and without the verifier) on the eval
splits, hit latency p50/p99 for exact and semantic lookups on the in-process and Redis (loopback) backends, and the
Redis vector index (HNSW / FLAT) at growing sizes: lookup p50/p99 and recall@1 against an exact brute-force search.

Run: .venv/bin/python tests/bench/bench_cache.py [--iterations 2000] [--sections sweep,latency,index]
     [--index-sizes 10000,100000] [--dim 384] [--data uniform|clustered]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from neuroscale.cache import CacheSettings  # noqa: E402
from neuroscale.cache.backends import MemoryBackend  # noqa: E402
from neuroscale.cache.embedders import LocalEmbedder  # noqa: E402
from neuroscale.cache.eval import (  # noqa: E402
    RULES_ACCEPT, by_category, format_sweep, load_pairs, pair_similarities, sweep, verdict_scores,
)
from neuroscale.cache.redis_backend import RedisBackend  # noqa: E402
from neuroscale.cache.response_cache import KeyedResponseCache  # noqa: E402
from neuroscale.cache.semantic import SemanticMatcher  # noqa: E402
from neuroscale.cache.verifier import same_question  # noqa: E402
from neuroscale.cache.vector_index import VectorIndex  # noqa: E402
from tests.support.redis_server import start_redis, start_redis_stack  # noqa: E402

EVAL_DIR = ROOT / "tests" / "data" / "semantic_eval"


def make_request(question: str) -> dict[str, Any]:
    return {"model": "m", "temperature": 0,
            "messages": [{"role": "system", "content": "You are a support bot."}, {"role": "user", "content": question}]}


def make_response(tokens: int = 200) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "usage": {"prompt_tokens": 20, "completion_tokens": tokens, "total_tokens": tokens + 20},
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "word " * tokens}}]}


def print_sweep(embedder: LocalEmbedder, settings: CacheSettings) -> None:
    threshold, ablation = settings.similarity_threshold, settings.ablation_similarity or 1.0
    for split in ("tune", "heldout", "fresh"):
        pairs = load_pairs(EVAL_DIR / f"{split}.jsonl")
        sims, scores = pair_similarities(pairs, embedder.embed_sync), verdict_scores(pairs, embedder.embed_sync)
        checks: dict[str, np.ndarray | None] = {"no verifier": None, "rules": scores == RULES_ACCEPT}
        for value in (0.95, 0.94, 0.93, 0.92, 0.91, 0.90):
            checks[f"rules+abl {value:.2f}"] = scores >= value
        rows = sweep(pairs, sims, checks, np.round(np.arange(0.70, 0.975, 0.02), 2))
        print(format_sweep(rows, f"\n== threshold sweep, {split} split ({len(pairs)} pairs): hit% / false-hit% per check =="))
        default = f"rules+abl {ablation:.2f}"
        for name in ("rules", default):
            chosen = next(r for r in sweep(pairs, sims, {name: checks[name]}, [threshold]))
            print(f"threshold {threshold}, {name}: paraphrase hit {100 * chosen.hit_rate:.1f}% ({chosen.hits}/{chosen.same_pairs}), "
                  f"false hits {100 * chosen.false_hit_rate:.1f}% ({chosen.false_hits}/{chosen.different_pairs})")
        accepted = checks[default]
        assert accepted is not None
        print("  by category at the defaults (served/total):",
              {k: f"{a}/{b}" for k, (a, b) in sorted(by_category(pairs, sims, accepted, threshold).items())})


async def time_lookups(cache: KeyedResponseCache, request: dict[str, Any], iterations: int) -> tuple[float, float, str]:
    kind = ""
    for _ in range(20):
        hit = await cache.lookup("chat", request, "bench")
        assert hit is not None, "benchmark lookup missed"
        kind = hit.kind
    samples = []
    for _ in range(iterations):
        start = time.perf_counter()
        await cache.lookup("chat", request, "bench")
        samples.append(time.perf_counter() - start)
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(0.99 * (len(samples) - 1))] * 1000, kind


class NoClose:
    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner = inner

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self.inner.embed(texts)

    async def close(self) -> None:
        return None


async def latency_table(embedder: LocalEmbedder, redis_url: str, stack_url: str, iterations: int) -> None:
    print(f"\n== hit latency ({iterations} lookups each, 200-token answer, 64 semantic entries in the context) ==")
    print("  semantic: the rules accept the paraphrase; semantic+abl: the verifier's embedding check runs too")
    print(f"{'mode':<13} {'backend':<12} {'p50 ms':>8} {'p99 ms':>8}")
    cases = {
        "exact": ("How do I delete my account?", "How do I delete my account?"),
        "semantic": ("How do I delete my account?", "What are the steps to remove my account?"),
        "semantic+abl": ("What is the capital of France?", "Which city is the capital of France?"),
    }
    backends = {"memory": None, "redis": redis_url, "redis+index": stack_url}
    for mode, (stored_q, query_q) in cases.items():
        for backend_name, url in backends.items():
            if mode == "exact" and backend_name == "redis+index":
                continue
            settings = CacheSettings(mode="exact" if mode == "exact" else "semantic",
                                     backend="memory" if url is None else "redis", redis_url=url,
                                     key_prefix=f"bench-{mode.replace('+', '-')}")
            backend: Any = (MemoryBackend(ttl_seconds=3600, max_entries=10_000, bucket_size=64) if url is None
                            else RedisBackend.from_settings(settings))
            semantic = settings.mode == "semantic"
            writer = KeyedResponseCache(settings, backend, matcher=SemanticMatcher.from_settings(settings, embedder=NoClose(embedder)) if semantic else None)
            # Fill the context to the scan's bucket bound so every backend compares against the same entries.
            for i in range(63 if semantic else 0):
                await writer.store("chat", make_request(f"How do I rename project number {i}?"), "bench", make_response())
            await writer.store("chat", make_request(stored_q), "bench", make_response())
            # memo_size=0: every lookup embeds its question, as a question the gateway has not seen would.
            reader_matcher = (SemanticMatcher(NoClose(embedder), threshold=settings.similarity_threshold, memo_size=0,
                                              verify=same_question, ablation_similarity=settings.ablation_similarity)
                              if semantic else None)
            cache = KeyedResponseCache(settings, backend, matcher=reader_matcher)
            p50, p99, kind = await time_lookups(cache, make_request(query_q), iterations if mode == "exact" else max(200, iterations // 10))
            print(f"{mode:<13} {backend_name:<12} {p50:>8.3f} {p99:>8.3f}   (hit kind: {kind})")
            await backend.close()


def unit_rows(rng: np.random.Generator, count: int, dim: int) -> np.ndarray:
    rows = rng.standard_normal((count, dim), dtype=np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def brute_force(vectors: np.ndarray, queries: np.ndarray, chunk: int = 50) -> np.ndarray:
    """The exact nearest entry per query; in chunks so the similarity matrix stays small at a million entries."""
    return np.concatenate([np.argmax(queries[i:i + chunk] @ vectors.T, axis=1) for i in range(0, len(queries), chunk)])


async def load_index(client: Any, index: VectorIndex, vectors: np.ndarray, context: str, batch: int = 2000) -> float:
    """Write the hashes the cache writes (vec, ctx, q), pipelined, and wait until the index holds them all."""
    name = await index.ensure(vectors.shape[1])
    started = time.perf_counter()
    for start in range(0, len(vectors), batch):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + batch, len(vectors))):
            pipe.hset(f"{index.key_prefix}{{bench}}:{i}", mapping={"vec": vectors[i].tobytes(), "ctx": context, "q": f"q{i}"})
        await pipe.execute()
        if start // batch % 50 == 0:
            print(f"    loaded {min(start + batch, len(vectors)):,} / {len(vectors):,}", flush=True)
    while int((await client.ft(name).info())["num_docs"]) < len(vectors):
        await asyncio.sleep(0.5)
    return time.perf_counter() - started


def entry_vectors(rng: np.random.Generator, count: int, dim: int, data: str) -> np.ndarray:
    """uniform: independent random unit vectors (the hard case for a graph index: every distance nearly equal);
    clustered: one of count/50 topic centres plus noise, closer to how embeddings of real questions lie."""
    if data == "uniform":
        return unit_rows(rng, count, dim)
    centres = unit_rows(rng, max(1, count // 50), dim)
    rows = centres[rng.integers(0, len(centres), count)] + 0.6 * unit_rows(rng, count, dim)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def index_table(url: str, sizes: list[int], dim: int, queries: int, data: str = "uniform") -> None:
    import redis.asyncio as redis_asyncio

    print(f"\n== vector index on Redis with the search module: {dim} dims, {data} unit vectors, one context, "
          f"{queries} queries per row ==")
    print("  near: the query is a stored vector plus noise (cosine ~0.9 to it), as a paraphrase is; "
          "random: a fresh random vector")
    print(f"{'entries':>9} {'index':<5} {'load s':>7} {'near p50 ms':>11} {'near p99 ms':>11} {'recall@1 near':>13} "
          f"{'rand p50 ms':>11} {'recall@1 rand':>13}")
    rng = np.random.default_rng(7)
    client = redis_asyncio.from_url(url, socket_timeout=120)  # loading a million entries is slow
    context = "c" * 64
    try:
        for size in sizes:
            vectors = entry_vectors(rng, size, dim, data)
            picks = rng.integers(0, size, queries)
            # Noise of norm 0.5 around a unit vector: cosine ~0.89 to the stored one.
            near = vectors[picks] + 0.5 * unit_rows(rng, queries, dim)
            near /= np.linalg.norm(near, axis=1, keepdims=True)
            fresh = unit_rows(rng, queries, dim)
            truth = {"near": brute_force(vectors, near), "rand": brute_force(vectors, fresh)}
            algorithms = ["HNSW", "FLAT"] if size <= 100_000 else ["HNSW"]
            for algorithm in algorithms:
                await client.flushall(asynchronous=True)
                index = VectorIndex(client, key_prefix=f"bench{algorithm.lower()}", algorithm=algorithm)
                load_seconds = await load_index(client, index, vectors, context)
                row = [f"{size:>9,} {algorithm:<5} {load_seconds:>7.1f}"]
                for vector in fresh[:20]:  # warm-up, untimed
                    await index.nearest(context, vector.astype("<f4").tobytes(), dim)
                for kind, batch in (("near", near), ("rand", fresh)):
                    samples, correct = [], 0
                    for q, vector in enumerate(batch):
                        started = time.perf_counter()
                        found = await index.nearest(context, vector.astype("<f4").tobytes(), dim)
                        samples.append(time.perf_counter() - started)
                        correct += bool(found) and found[0].key.rpartition(":")[2] == str(truth[kind][q])
                    samples.sort()
                    p50, p99 = statistics.median(samples) * 1000, samples[int(0.99 * (len(samples) - 1))] * 1000
                    row.append(f"{p50:>11.3f} {p99:>11.3f} {100 * correct / queries:>12.1f}%" if kind == "near"
                               else f"{p50:>11.3f} {100 * correct / queries:>12.1f}%")
                print(" ".join(row), flush=True)
            del vectors
        await client.flushall(asynchronous=True)
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--sections", default="sweep,latency,index")
    parser.add_argument("--index-sizes", default="10000,100000", help="a million at 64 dims took 17-30 min here")
    parser.add_argument("--dim", type=int, default=384, help="vector dimension for the index section")
    parser.add_argument("--queries", type=int, default=500, help="queries per index row")
    parser.add_argument("--data", choices=("uniform", "clustered"), default="uniform", help="entries of the index section")
    args = parser.parse_args()
    sections = set(args.sections.split(","))
    if sections & {"sweep", "latency"}:
        embedder = LocalEmbedder()
        embedder.load()
        if "sweep" in sections:
            print_sweep(embedder, CacheSettings())
        if "latency" in sections:
            server, stack = start_redis(), start_redis_stack()
            try:
                asyncio.run(latency_table(embedder, server.url, stack.url, args.iterations))
            finally:
                server.stop()
                stack.stop()
    if "index" in sections:
        stack = start_redis_stack()
        try:
            sizes = [int(n) for n in args.index_sizes.split(",")]
            asyncio.run(index_table(stack.url, sizes, args.dim, args.queries, args.data))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
