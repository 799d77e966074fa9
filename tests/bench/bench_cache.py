"""Benchmark for the response cache: the semantic threshold sweep (with and without the verifier) on both eval
splits, and hit latency p50/p99 for exact and semantic lookups on the in-process and Redis (loopback) backends.

Run: .venv/bin/python tests/bench/bench_cache.py [--iterations 2000]
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
from neuroscale.cache.eval import by_category, format_sweep, load_pairs, pair_similarities, sweep, verdicts  # noqa: E402
from neuroscale.cache.redis_backend import RedisBackend  # noqa: E402
from neuroscale.cache.response_cache import KeyedResponseCache  # noqa: E402
from neuroscale.cache.semantic import SemanticMatcher  # noqa: E402
from neuroscale.cache.verifier import same_question  # noqa: E402
from tests.support.redis_server import start_redis  # noqa: E402

EVAL_DIR = ROOT / "tests" / "data" / "semantic_eval"


def make_request(question: str) -> dict[str, Any]:
    return {"model": "m", "temperature": 0,
            "messages": [{"role": "system", "content": "You are a support bot."}, {"role": "user", "content": question}]}


def make_response(tokens: int = 200) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "m",
            "usage": {"prompt_tokens": 20, "completion_tokens": tokens, "total_tokens": tokens + 20},
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "word " * tokens}}]}


def print_sweep(embedder: LocalEmbedder, default: float) -> None:
    for split in ("tune", "heldout"):
        pairs = load_pairs(EVAL_DIR / f"{split}.jsonl")
        sims, verified = pair_similarities(pairs, embedder.embed_sync), verdicts(pairs)
        rows = sweep(pairs, sims, verified, np.round(np.arange(0.70, 0.975, 0.01), 2))
        print(format_sweep(rows, f"\n== threshold sweep, {split} split ({len(pairs)} pairs) =="))
        chosen = [r for r in rows if r.verifier and abs(r.threshold - default) < 1e-9][0]
        print(f"default {default}: paraphrase hit {100 * chosen.hit_rate:.1f}% ({chosen.hits}/{chosen.same_pairs}), "
              f"false hits {100 * chosen.false_hit_rate:.1f}% ({chosen.false_hits}/{chosen.different_pairs})")
        print("  by category (served/total):", {k: f"{a}/{b}" for k, (a, b) in sorted(by_category(pairs, sims, verified, default).items())})


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


async def latency_table(embedder: LocalEmbedder, redis_url: str, iterations: int) -> None:
    print(f"\n== hit latency ({iterations} lookups each, 200-token answer, semantic bucket holds 64 entries) ==")
    print(f"{'mode':<9} {'backend':<8} {'p50 ms':>8} {'p99 ms':>8}")
    stored_q, paraphrase = "How do I delete my account?", "What are the steps to remove my account?"
    for mode in ("exact", "semantic"):
        for backend_name in ("memory", "redis"):
            settings = CacheSettings(mode=mode, backend=backend_name, redis_url=redis_url if backend_name == "redis" else None,
                                     key_prefix=f"bench-{mode}")
            backend: Any = (RedisBackend.from_settings(settings) if backend_name == "redis" else
                            MemoryBackend(ttl_seconds=3600, max_entries=10_000, bucket_size=64))
            writer = KeyedResponseCache(settings, backend, matcher=SemanticMatcher.from_settings(settings, embedder=NoClose(embedder)) if mode == "semantic" else None)
            # Fill the bucket to its bound so the comparison works on a full candidate set.
            for i in range(63 if mode == "semantic" else 0):
                await writer.store("chat", make_request(f"How do I rename project number {i}?"), "bench", make_response())
            await writer.store("chat", make_request(stored_q), "bench", make_response())
            # memo_size=0: every lookup embeds its question, as a question the gateway has not seen would.
            reader_matcher = (SemanticMatcher(NoClose(embedder), threshold=settings.similarity_threshold, memo_size=0,
                                              verify=lambda a, b: same_question(a, b).same)
                              if mode == "semantic" else None)
            cache = KeyedResponseCache(settings, backend, matcher=reader_matcher)
            query = make_request(paraphrase if mode == "semantic" else stored_q)
            p50, p99, kind = await time_lookups(cache, query, iterations if mode == "exact" else max(200, iterations // 10))
            print(f"{mode:<9} {backend_name:<8} {p50:>8.3f} {p99:>8.3f}   (hit kind: {kind})")
            await backend.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=2000)
    args = parser.parse_args()
    embedder = LocalEmbedder()
    embedder.load()
    print_sweep(embedder, CacheSettings().similarity_threshold)
    server = start_redis()
    try:
        asyncio.run(latency_table(embedder, server.url, args.iterations))
    finally:
        server.stop()


if __name__ == "__main__":
    main()
