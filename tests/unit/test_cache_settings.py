"""CacheSettings / EmbedderSettings: defaults, validation messages for bad values, parsing from a config mapping."""

from __future__ import annotations

from typing import Any

import pytest

from neuroscale.cache import CacheConfigError, CacheSettings, EmbedderSettings


def test_defaults_are_a_safe_exact_memory_cache() -> None:
    settings = CacheSettings()
    assert (settings.mode, settings.backend, settings.cacheable_temperature_max) == ("exact", "memory", 0.0)
    assert settings.verifier and 0.8 <= settings.similarity_threshold < 1.0
    assert settings.max_memory_bytes == 256 * 1024 * 1024  # the in-process cache is bounded by default
    assert settings.max_entry_bytes == 1024 * 1024
    assert CacheSettings(max_memory_mb=2).max_memory_bytes == 2 * 1024 * 1024
    assert (settings.semantic_index, settings.redis_cluster, settings.ablation_similarity) == ("auto", False, 0.93)
    assert CacheSettings(ablation_similarity=None).ablation_similarity is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"mode": "fuzzy"}, "mode must be"),
        ({"backend": "redis"}, "redis_url is required"),
        ({"backend": "memory", "redis_url": "http://x"}, "redis_url must start"),
        ({"ttl_seconds": 0}, "ttl_seconds"),
        ({"max_entries": -1}, "max_entries"),
        ({"max_memory_mb": 0}, "max_memory_mb"),
        ({"max_memory_mb": None}, "max_memory_mb must be set for the memory backend"),
        ({"max_entry_bytes": 0}, "max_entry_bytes"),
        ({"redis_timeout_seconds": 0}, "redis_timeout_seconds"),
        ({"breaker_failures": 0}, "breaker_failures"),
        ({"breaker_reset_seconds": -1}, "breaker_reset_seconds"),
        ({"similarity_threshold": 1.5}, "similarity_threshold"),
        ({"cacheable_temperature_max": -0.1}, "cacheable_temperature_max"),
        ({"key_prefix": "a:b"}, "key_prefix"),
        ({"embedder": {"kind": "local"}}, "embedder must be"),
        ({"semantic_index": "ivf"}, "semantic_index must be"),
        ({"redis_cluster": "yes"}, "redis_cluster must be"),
        ({"ablation_similarity": 0}, "ablation_similarity"),
    ],
)
def test_bad_values_are_named(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(CacheConfigError, match=message):
        CacheSettings(**overrides)


def test_embedder_validation() -> None:
    with pytest.raises(CacheConfigError, match="url is required"):
        EmbedderSettings(kind="openai", model="text-embedding-3-small")
    with pytest.raises(CacheConfigError, match="Titan model id"):
        EmbedderSettings(kind="bedrock")
    with pytest.raises(CacheConfigError, match="kind must be"):
        EmbedderSettings(kind="cohere")  # type: ignore[arg-type]


def test_from_mapping_accepts_camel_case_and_rejects_unknown_fields() -> None:
    settings = CacheSettings.from_mapping({
        "mode": "semantic", "backend": "redis", "redisUrl": "redis://127.0.0.1:6379/0", "ttlSeconds": 60,
        "similarityThreshold": 0.9, "embedder": {"kind": "openai", "url": "http://e/v1", "model": "e", "apiKeyEnv": "K"},
    })
    assert settings.redis_url == "redis://127.0.0.1:6379/0" and settings.ttl_seconds == 60
    assert settings.embedder == EmbedderSettings(kind="openai", url="http://e/v1", model="e", api_key_env="K")
    with pytest.raises(CacheConfigError, match="unknown field cache.ttl"):
        CacheSettings.from_mapping({"ttl": 5})
    with pytest.raises(CacheConfigError, match="must be a mapping"):
        CacheSettings.from_mapping(["mode"])  # type: ignore[arg-type]
