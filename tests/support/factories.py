"""Test objects built from defaults plus overrides, instead of copied YAML blobs."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from tests.support.kube import GROUP_VERSION, NAMESPACE


def deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def make_model_deployment(name: str = "llama", namespace: str = NAMESPACE, **spec_overrides: Any) -> dict[str, Any]:
    """A valid Llama-3.1-8B on vLLM ModelDeployment, sized within inf2; keyword arguments override spec fields (camelCase)."""
    spec = {"model": {"source": "hf://meta-llama/Llama-3.1-8B-Instruct", "maxModelLen": 4096},
            "engine": {"name": "vllm"}, "accelerator": {"families": ["inf2"]}, "replicas": 1}
    return {
        "apiVersion": GROUP_VERSION,
        "kind": "ModelDeployment",
        # The emulator assigns no uid or generation; a real API server would. kopf needs a uid.
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "generation": 1,
                     "resourceVersion": "1"},
        "spec": deep_merge(spec, spec_overrides),
    }


def _neuroscale_object(kind: str, name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": GROUP_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace, "uid": str(uuid.uuid4()), "generation": 1,
                     "resourceVersion": "1"},
        "spec": spec,
    }


def make_inference_cascade(name: str = "chat", namespace: str = NAMESPACE, **spec_overrides: Any) -> dict[str, Any]:
    """A two-tier cascade: ModelDeployment `llama` first, then an external OpenAI-compatible API with a key Secret."""
    spec = {
        "tiers": [
            {"name": "small", "modelDeployment": {"name": "llama"}},
            {"name": "large", "openai": {"url": "https://llm.example.com/v1", "model": "large-model",
                                         "apiKeySecretRef": {"name": "large-key", "key": "api-key"}}},
        ],
        "gateway": {"replicas": 2},
    }
    return _neuroscale_object("InferenceCascade", name, namespace, deep_merge(spec, spec_overrides))


def make_cache_tier(name: str = "answers", namespace: str = NAMESPACE, **spec_overrides: Any) -> dict[str, Any]:
    """An exact-match CacheTier on an operator-run Redis; keyword arguments override spec fields (camelCase)."""
    spec = {"mode": "exact", "backend": {"inCluster": {}}, "ttlSeconds": 600, "maxMemoryMB": 128}
    return _neuroscale_object("CacheTier", name, namespace, deep_merge(spec, spec_overrides))
