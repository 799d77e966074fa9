"""Covers model architectures: catalog values of well-known models, recognising them in hf:// and s3:// sources
(case, separators, prefixes and suffixes; 8B never matching 70B; the deepest path mention winning; derivatives),
unknown sources, lookup errors, and the generic shape estimated from a parameter count."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuroscale.sizing import KNOWN_ARCHITECTURES, generic_architecture, get_architecture, infer_architecture


@pytest.mark.parametrize(
    ("name", "layers", "hidden", "heads", "kv", "head_dim"),
    [
        ("Llama-3.1-8B", 32, 4096, 32, 8, 128),
        ("Llama-3.1-70B", 80, 8192, 64, 8, 128),
        ("Llama-3.1-405B", 126, 16384, 128, 8, 128),
        ("Llama-3.2-1B", 16, 2048, 32, 8, 64),
        ("Qwen2.5-7B", 28, 3584, 28, 4, 128),
        ("Gemma-2-9B", 42, 3584, 16, 8, 256),
        ("Gemma-2-27B", 46, 4608, 32, 16, 128),
    ],
)
def test_known_shapes(name: str, layers: int, hidden: int, heads: int, kv: int, head_dim: int) -> None:
    a = KNOWN_ARCHITECTURES[name]
    assert (a.layers, a.hidden_size, a.attention_heads, a.kv_heads, a.head_dim) == (layers, hidden, heads, kv, head_dim)


def test_catalog_is_self_consistent() -> None:
    for a in KNOWN_ARCHITECTURES.values():
        assert a.attention_heads % a.kv_heads == 0, a.name
        assert not a.estimated
        assert a.decode_params_billions <= a.params_billions


def test_mixture_of_experts_counts_all_experts_but_reads_few() -> None:
    mixtral = KNOWN_ARCHITECTURES["Mixtral-8x7B"]
    assert mixtral.params_billions == pytest.approx(46.7)
    assert mixtral.decode_params_billions == pytest.approx(12.9)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("hf://meta-llama/Meta-Llama-3.1-8B-Instruct", "Llama-3.1-8B"),
        ("hf://meta-llama/Llama-3.1-70B-Instruct", "Llama-3.1-70B"),
        ("hf://meta-llama/Meta-Llama-3-8B", "Llama-3-8B"),
        ("hf://meta-llama/Llama-3.3-70B-Instruct", "Llama-3.3-70B"),
        ("hf://meta-llama/Llama-3.2-3B-Instruct", "Llama-3.2-3B"),
        ("s3://bucket/prefix/llama-3.1-8b/", "Llama-3.1-8B"),
        ("s3://bucket/LLAMA_3_1_405B_FP8/", "Llama-3.1-405B"),
        ("llama3-8b", "Llama-3-8B"),
        ("hf://mistralai/Mistral-7B-Instruct-v0.3", "Mistral-7B"),
        ("hf://mistralai/Mixtral-8x7B-Instruct-v0.1", "Mixtral-8x7B"),
        ("hf://Qwen/Qwen2.5-72B-Instruct", "Qwen2.5-72B"),
        ("hf://google/gemma-2-27b-it", "Gemma-2-27B"),
        ("hf://meta-llama/Llama-2-7b-chat-hf", "Llama-2-7B"),
        # Derivatives keep the base shape: DeepSeek's distill is a Llama-3.1-8B.
        ("hf://deepseek-ai/DeepSeek-R1-Distill-Llama-8B", "Llama-3.1-8B"),
        # The deepest mention is the model; a bucket name is not.
        ("s3://llama-3-70b-artifacts/exports/llama-3.1-8b/", "Llama-3.1-8B"),
    ],
)
def test_infer_from_sources(source: str, expected: str) -> None:
    found = infer_architecture(source)
    assert found is not None
    assert found.name == expected


@pytest.mark.parametrize(
    "source", ["hf://acme/secret-model", "s3://bucket/prefix/", "hf://meta-llama/Llama-3.1-7B", "llama-3.1-8bit"]
)
def test_unknown_sources(source: str) -> None:
    assert infer_architecture(source) is None


_separators = st.sampled_from(["-", "_", " "])


@given(
    name=st.sampled_from(sorted(KNOWN_ARCHITECTURES)),
    sep=_separators,
    upper=st.booleans(),
    prefix=st.sampled_from(["hf://org/", "s3://bucket/models/", "hf://org/Meta-", ""]),
    suffix=st.sampled_from(["", "-Instruct", "-it", "-hf/", "-Instruct-v0.3/"]),
)
def test_every_known_name_round_trips(name: str, sep: str, upper: bool, prefix: str, suffix: str) -> None:
    written = name.replace("-", sep)
    written = written.upper() if upper else written.lower()
    found = infer_architecture(prefix + written + suffix)
    assert found is not None
    assert found.name == name


@given(size=st.sampled_from(["8", "70", "405"]), other=st.sampled_from(["8", "70", "405"]))
def test_size_never_matches_another_size(size: str, other: str) -> None:
    found = infer_architecture(f"hf://meta-llama/Llama-3.1-{size}B-Instruct")
    assert found is not None
    assert (found.name == f"Llama-3.1-{other}B") == (size == other)


def test_get_architecture() -> None:
    assert get_architecture("Llama-3.1-8B") is KNOWN_ARCHITECTURES["Llama-3.1-8B"]
    assert get_architecture("qwen2.5-14b").name == "Qwen2.5-14B"
    with pytest.raises(ValueError, match="known: .*Llama-3.1-8B"):
        get_architecture("gpt-5")


@pytest.mark.parametrize(("params", "true_name"), [(8.03, "Llama-3.1-8B"), (70.6, "Llama-3.1-70B")])
def test_generic_shape_is_close_to_llama(params: float, true_name: str) -> None:
    generic = generic_architecture(params)
    true = KNOWN_ARCHITECTURES[true_name]
    assert generic.estimated
    assert generic.params_billions == params
    assert generic.kv_heads == 8 and generic.head_dim == 128
    # Within 15% of the real depth and width, so its KV cache estimate is in the same range.
    assert generic.layers == pytest.approx(true.layers, rel=0.15)
    assert generic.hidden_size == pytest.approx(true.hidden_size, rel=0.15)


@given(st.floats(min_value=0.1, max_value=1000))
def test_generic_shape_grows_with_params(params: float) -> None:
    small, big = generic_architecture(params), generic_architecture(params * 2)
    assert big.layers >= small.layers
    assert big.hidden_size >= small.hidden_size
    assert small.attention_heads * small.head_dim == small.hidden_size
    assert small.attention_heads % small.kv_heads == 0


def test_generic_rejects_nonpositive() -> None:
    with pytest.raises(ValueError, match="positive"):
        generic_architecture(0)
