"""Semantic cache over the in-process backend with the real all-MiniLM-L6-v2 (offline): paraphrase hits with a
similarity, hard negatives refused by the verifier, a paraphrase with one extra framing word served through the
verifier's embedding check while an added qualifier is not (and neither without the check), no match across scopes or
differing context, tool-call answers kept exact-only, bucket bound, embedding packing, embedder failure as a miss, and the light import of the package."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from neuroscale.cache import CacheSettings
from neuroscale.cache.backends import MemoryBackend
from neuroscale.cache.embedders import LocalEmbedder
from neuroscale.cache.response_cache import KeyedResponseCache
from neuroscale.cache.semantic import SemanticMatcher, pack_entry, unpack_entry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    model = LocalEmbedder()
    model.load()
    return model


class SharedEmbedder:
    """Lends the module's loaded model to each cache without letting a cache's close() unload it."""

    def __init__(self, inner: LocalEmbedder) -> None:
        self.inner = inner

    async def embed(self, texts: list[str]) -> list[list[float]]:
        return await self.inner.embed(texts)

    async def close(self) -> None:
        return None


def make_request(question: str, system: str = "You are a support bot.", **overrides: Any) -> dict[str, Any]:
    return {"model": "m", "temperature": 0, **overrides,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": question}]}


def make_response(text: str = "Go to Settings > Account > Delete.", **message: Any) -> dict[str, Any]:
    return {"object": "chat.completion", "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text, **message}, "finish_reason": "stop"}]}


def make_cache(embedder: Any, **overrides: Any) -> KeyedResponseCache:
    settings = CacheSettings(mode="semantic", **overrides)
    backend = MemoryBackend(ttl_seconds=60, max_entries=100, bucket_size=settings.semantic_bucket_size)
    matcher = SemanticMatcher.from_settings(settings, embedder=embedder)
    return KeyedResponseCache(settings, backend, matcher=matcher)


async def test_paraphrase_hits_and_hard_negatives_miss(embedder: LocalEmbedder) -> None:
    cache = make_cache(SharedEmbedder(embedder))
    await cache.store("chat", make_request("How do I delete my account?"), "t", make_response())
    hit = await cache.lookup("chat", make_request("What are the steps to remove my account?"), "t")
    assert hit is not None and hit.kind == "semantic"
    assert hit.similarity is not None and cache.settings.similarity_threshold <= hit.similarity < 1.0
    for negative in ("How do I restore my account?", "Why can I not delete my account?", "How do I delete my Google account?"):
        assert await cache.lookup("chat", make_request(negative), "t") is None, negative
    exact = await cache.lookup("chat", make_request("How do I delete my account?"), "t")
    assert exact is not None and exact.kind == "exact"


class CountingEmbedder(SharedEmbedder):
    """Counts model calls, to show the embedding check adds none on the bucket scan."""

    calls = 0

    async def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return await self.inner.embed(texts)


async def test_embedding_check_serves_a_word_that_adds_nothing_but_not_a_qualifier(embedder: LocalEmbedder) -> None:
    counting = CountingEmbedder(embedder)
    cache, strict = make_cache(counting), make_cache(SharedEmbedder(embedder), ablation_similarity=None)
    for c in (cache, strict):
        await c.store("chat", make_request("What is the capital of France?"), "t", make_response("Paris"))
        await c.store("chat", make_request("How do I reset my router?"), "t", make_response("Hold the button."))
    before = counting.calls
    hit = await cache.lookup("chat", make_request("Which city is the capital of France?"), "t")
    assert hit is not None and hit.kind == "semantic" and hit.response == make_response("Paris")
    assert counting.calls == before + 1  # the question and the check's two texts, in one model call
    assert await strict.lookup("chat", make_request("Which city is the capital of France?"), "t") is None
    for c in (cache, strict):
        assert await c.lookup("chat", make_request("How do I reset my router password?"), "t") is None


async def test_never_across_scopes_or_contexts(embedder: LocalEmbedder) -> None:
    cache = make_cache(SharedEmbedder(embedder))
    await cache.store("chat", make_request("How do I delete my account?"), "tenant-a", make_response())
    paraphrase = "What are the steps to remove my account?"
    assert await cache.lookup("chat", make_request(paraphrase), "tenant-b") is None
    assert await cache.lookup("chat", make_request(paraphrase, system="Answer in French."), "tenant-a") is None
    assert await cache.lookup("chat", make_request(paraphrase, max_tokens=5), "tenant-a") is None
    assert await cache.lookup("chat", make_request(paraphrase), "tenant-a") is not None


async def test_verifier_off_serves_false_hits(embedder: LocalEmbedder) -> None:
    # Shows why the verifier exists: similarity alone matches the opposite request.
    cache = make_cache(SharedEmbedder(embedder), verifier=False, similarity_threshold=0.8)
    await cache.store("chat", make_request("How do I enable two-factor authentication?"), "t", make_response())
    assert await cache.lookup("chat", make_request("How do I disable two-factor authentication?"), "t") is not None


async def test_tool_call_answers_stay_exact_only(embedder: LocalEmbedder) -> None:
    cache = make_cache(SharedEmbedder(embedder))
    call = [{"id": "c1", "type": "function", "function": {"name": "delete_account", "arguments": "{}"}}]
    await cache.store("chat", make_request("How do I delete my account?"), "t", make_response("", tool_calls=call))
    assert await cache.lookup("chat", make_request("How do I delete my account?"), "t") is not None
    assert await cache.lookup("chat", make_request("What are the steps to remove my account?"), "t") is None


async def test_bucket_keeps_only_the_newest_candidates(embedder: LocalEmbedder) -> None:
    cache = make_cache(SharedEmbedder(embedder), semantic_bucket_size=2)
    await cache.store("chat", make_request("How do I delete my account?"), "t", make_response())
    for other in ("How do I rename my account?", "How do I export my data?"):
        await cache.store("chat", make_request(other), "t", make_response(other))
    assert await cache.lookup("chat", make_request("What are the steps to remove my account?"), "t") is None
    assert await cache.lookup("chat", make_request("How do I delete my account?"), "t") is not None


class FailingEmbedder:
    async def embed(self, texts: list[str]) -> list[list[float]]:
        raise RuntimeError("embedding service down")

    async def close(self) -> None:
        return None


async def test_embedder_failure_keeps_exact_matching(embedder: LocalEmbedder) -> None:
    cache = make_cache(FailingEmbedder())
    await cache.store("chat", make_request("How do I delete my account?"), "t", make_response())
    hit = await cache.lookup("chat", make_request("How do I delete my account?"), "t")
    assert hit is not None and hit.kind == "exact"
    assert await cache.lookup("chat", make_request("What are the steps to remove my account?"), "t") is None
    # With a candidate in the bucket, the lookup needs the embedder; its failure is a miss, not an error.
    writer = make_cache(SharedEmbedder(embedder))
    await writer.store("chat", make_request("How do I delete my account?"), "t", make_response())
    settings = writer.settings
    reader = KeyedResponseCache(settings, writer.backend, matcher=SemanticMatcher.from_settings(settings, embedder=FailingEmbedder()))
    assert await reader.lookup("chat", make_request("What are the steps to remove my account?"), "t") is None
    assert await writer.lookup("chat", make_request("What are the steps to remove my account?"), "t") is not None


def test_entry_packing_round_trips() -> None:
    vector = np.arange(384, dtype=np.float32) / 384
    restored, question = unpack_entry(pack_entry(vector, "Straße? ✓"))
    assert question == "Straße? ✓" and np.array_equal(restored, vector)


def test_importing_the_cache_stays_light() -> None:
    code = "import sys, neuroscale.cache; print(sorted(m for m in ('numpy','torch','sentence_transformers','redis') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
