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
