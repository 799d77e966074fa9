"""Shapes of well-known open LLMs, recognising them in a model source, and a generic shape for unknown ones."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class ModelArchitecture:
    """What sizing needs to know about a decoder-only transformer."""

    name: str
    params_billions: float
    layers: int
    hidden_size: int
    attention_heads: int
    kv_heads: int
    head_dim: int
    # Mixture-of-experts models keep every expert in memory but read only the routed ones per token.
    active_params_billions: float | None = None
    estimated: bool = False

    @property
    def decode_params_billions(self) -> float:
        """Parameters read for each generated token."""
        return self.active_params_billions or self.params_billions


def _arch(
    name: str, params: float, layers: int, hidden: int, heads: int, kv: int, head_dim: int,
    active: float | None = None,
) -> ModelArchitecture:
    return ModelArchitecture(name, params, layers, hidden, heads, kv, head_dim, active)


# Values from each model's Hugging Face config.json (num_hidden_layers, hidden_size, num_attention_heads,
# num_key_value_heads, head_dim) and the parameter count on its model card.
KNOWN_ARCHITECTURES: Mapping[str, ModelArchitecture] = MappingProxyType(
    {
        a.name: a
        for a in (
            _arch("Llama-2-7B", 6.74, 32, 4096, 32, 32, 128),
            _arch("Llama-2-13B", 13.0, 40, 5120, 40, 40, 128),
            _arch("Llama-2-70B", 69.0, 80, 8192, 64, 8, 128),
            _arch("Llama-3-8B", 8.03, 32, 4096, 32, 8, 128),
            _arch("Llama-3-70B", 70.6, 80, 8192, 64, 8, 128),
            _arch("Llama-3.1-8B", 8.03, 32, 4096, 32, 8, 128),
            _arch("Llama-3.1-70B", 70.6, 80, 8192, 64, 8, 128),
            _arch("Llama-3.1-405B", 405.9, 126, 16384, 128, 8, 128),
            _arch("Llama-3.2-1B", 1.24, 16, 2048, 32, 8, 64),
            _arch("Llama-3.2-3B", 3.21, 28, 3072, 24, 8, 128),
            _arch("Llama-3.3-70B", 70.6, 80, 8192, 64, 8, 128),
            _arch("Mistral-7B", 7.24, 32, 4096, 32, 8, 128),
            _arch("Mixtral-8x7B", 46.7, 32, 4096, 32, 8, 128, active=12.9),
            _arch("Mixtral-8x22B", 141.0, 56, 6144, 48, 8, 128, active=39.0),
            _arch("Qwen2.5-0.5B", 0.49, 24, 896, 14, 2, 64),
            _arch("Qwen2.5-1.5B", 1.54, 28, 1536, 12, 2, 128),
            _arch("Qwen2.5-3B", 3.09, 36, 2048, 16, 2, 128),
            _arch("Qwen2.5-7B", 7.62, 28, 3584, 28, 4, 128),
            _arch("Qwen2.5-14B", 14.7, 48, 5120, 40, 8, 128),
            _arch("Qwen2.5-32B", 32.5, 64, 5120, 40, 8, 128),
            _arch("Qwen2.5-72B", 72.7, 80, 8192, 64, 8, 128),
            _arch("Qwen3-8B", 8.19, 36, 4096, 32, 8, 128),
            _arch("Qwen3-32B", 32.8, 64, 5120, 64, 8, 128),
            _arch("Gemma-2-2B", 2.61, 26, 2304, 8, 4, 256),
            _arch("Gemma-2-9B", 9.24, 42, 3584, 16, 8, 256),
            _arch("Gemma-2-27B", 27.2, 46, 4608, 32, 16, 128),
        )
    }
)

# family, optional version ("3", "3.1", "2-5" once separators are folded), optional words ("-small",
# "-distill"), then the size right after a dash and ending at a non-alphanumeric: "-8b" never matches "-70b".
_NAME = re.compile(
    r"(?P<family>llama|mistral|mixtral|qwen|gemma)-?(?P<version>\d+(?:[.-]\d)?)?"
    r"(?:-[a-z]+)*?-(?P<size>(?:\d+x)?\d+(?:\.\d+)?)b(?![a-z0-9])"
)

_Key = tuple[str, str | None, str]


def _keys(text: str) -> list[_Key]:
    folded = re.sub(r"[\s_]+", "-", text.lower())
    return [
        (m["family"], m["version"].replace("-", ".") if m["version"] else None, m["size"])
        for m in _NAME.finditer(folded)
    ]


def _version_rank(version: str | None) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split(".")) if version else ()


_BY_KEY: Mapping[_Key, ModelArchitecture] = MappingProxyType(
    {_keys(a.name)[0]: a for a in KNOWN_ARCHITECTURES.values()}
)


def _lookup(family: str, version: str | None, size: str) -> ModelArchitecture | None:
    exact = _BY_KEY.get((family, version, size))
    if exact is not None:
        return exact
    # "llama-8b" (a distilled or fine-tuned derivative) or "llama3.3-8b": within a major version, the same
    # family and size share a shape, so take the newest known one; across major versions shapes differ.
    major = version.split(".")[0] if version else None
    same_size = [
        (v, a)
        for (f, v, s), a in _BY_KEY.items()
        if f == family and s == size and (major is None or (v is not None and v.split(".")[0] == major))
    ]
    if not same_size:
        return None
    return max(same_size, key=lambda va: _version_rank(va[0]))[1]


def infer_architecture(source: str) -> ModelArchitecture | None:
    """The known architecture named in a model source such as `hf://org/Name-Instruct` or `s3://b/llama-3.1-8b/`.

    The deepest mention wins (`s3://llama-70b-bucket/llama-3.1-8b/` is the 8B), matching is case-insensitive
    and treats `_`, spaces and `-` alike.
    """
    for family, version, size in reversed(_keys(source)):
        found = _lookup(family, version, size)
        if found is not None:
            return found
    return None


def get_architecture(name: str) -> ModelArchitecture:
    """A known architecture by its catalog name (or any source naming it); ValueError listing names otherwise."""
    found = KNOWN_ARCHITECTURES.get(name) or infer_architecture(name)
    if found is None:
        raise ValueError(
            f"unknown model architecture {name!r}; known: {', '.join(KNOWN_ARCHITECTURES)}"
        )
    return found


# Generic shape for a model known only by its parameter count, modelled on the Llama-3 family: a dense decoder
# with params ~= 12 * layers * hidden^2 (attention + SwiGLU MLP, embeddings ignored), hidden ~= 128 * layers
# (Llama-3-8B: 4096/32; 405B: 16384/126), 128-wide heads and grouped-query attention with 8 KV heads.
# The KV cache of a model with full multi-head attention (e.g. Llama-2-7B, 32 KV heads) is up to 4x larger:
# name the architecture for those.
GENERIC_ASPECT = 128
GENERIC_HEAD_DIM = 128
GENERIC_KV_HEADS = 8


def generic_architecture(params_billions: float) -> ModelArchitecture:
    """A documented estimate of the shape of an unknown dense model with `params_billions` parameters."""
    if params_billions <= 0:
        raise ValueError(f"params_billions must be positive, got {params_billions}")
    hidden = (params_billions * 1e9 * GENERIC_ASPECT / 12) ** (1 / 3)
    # Whole groups of 8 query heads per KV head, as in Llama-3 (hidden 2048, 4096, 8192, 16384).
    group = GENERIC_HEAD_DIM * GENERIC_KV_HEADS
    hidden_size = group * max(1, round(hidden / group))
    heads = hidden_size // GENERIC_HEAD_DIM
    return ModelArchitecture(
        name=f"generic-{params_billions:g}B",
        params_billions=params_billions,
        layers=max(1, math.ceil(hidden / GENERIC_ASPECT)),
        hidden_size=hidden_size,
        attention_heads=heads,
        kv_heads=GENERIC_KV_HEADS,
        head_dim=GENERIC_HEAD_DIM,
        estimated=True,
    )
