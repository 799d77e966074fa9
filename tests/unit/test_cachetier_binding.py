"""CacheTier → gateway cache settings for the vector index and Redis Cluster fields: `semantic.index` and
`backend.external.clusterMode` reach CacheSettings (which the gateway parses), and their defaults add nothing."""

from __future__ import annotations

from neuroscale.api.cachetier import CacheTierSpec
from neuroscale.cache.settings import CacheSettings
from neuroscale.render.cachetier import cache_binding


def settings_for(spec: dict) -> CacheSettings:
    binding = cache_binding("chat-cache", "ml", CacheTierSpec.model_validate(spec), key_prefix="chat")
    return CacheSettings.from_mapping(binding.settings)


def test_index_and_cluster_mode_reach_the_gateway_settings() -> None:
    settings = settings_for({
        "mode": "semantic", "semantic": {"index": "flat"},
        "backend": {"external": {"url": "rediss://cache.example:6379/0", "clusterMode": True}},
    })
    assert (settings.semantic_index, settings.redis_cluster) == ("flat", True)


def test_defaults_leave_the_settings_as_they_were() -> None:
    binding = cache_binding("chat-cache", "ml", CacheTierSpec.model_validate({"mode": "semantic", "semantic": {}}),
                            key_prefix="chat")
    assert "semantic_index" not in binding.settings and "redis_cluster" not in binding.settings
    settings = CacheSettings.from_mapping(binding.settings)
    assert (settings.semantic_index, settings.redis_cluster) == ("auto", False)
