"""Property-based tests of `size()` over models, dtypes, lengths, batch sizes and family filters: the result
always fits (device and host memory), its TP is allowed on its instance and family, it is the cheapest among all
fitting (instance, TP) candidates with the smallest fitting TP on that instance, more sequences never need fewer
cores on a given instance nor a cheaper instance overall, and a misfit always raises SizingError with a fix."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuroscale.sizing import (
    CATALOG,
    FAMILY_TP,
    KNOWN_ARCHITECTURES,
    ModelArchitecture,
    SizingError,
    SizingRequest,
    SizingResult,
    estimate_memory,
    resolve_architecture,
    size,
)

requests = st.builds(
    SizingRequest,
    source=st.sampled_from(sorted(KNOWN_ARCHITECTURES)).map(lambda name: f"hf://org/{name}-Instruct"),
    dtype=st.sampled_from(["bf16", "fp16", "fp8", "int8"]),
    kv_cache_dtype=st.sampled_from(["auto", "fp8"]),
    max_model_len=st.sampled_from([512, 2048, 4096, 8192, 32768, 131072]),
    max_num_seqs=st.integers(min_value=1, max_value=128),
    families=st.sampled_from([(), ("inf2",), ("trn1",), ("inf2", "trn1"), ("trn2",)]),
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _try(req: SizingRequest) -> SizingResult | None:
    try:
        return size(req)
    except SizingError as err:
        assert "fit" in str(err) or "--" in str(err)
        return None


def _fitting(req: SizingRequest, arch: ModelArchitecture) -> list[tuple[str, int, float | None]]:
    """Brute force: every (instance, TP, price) where the model fits, ignoring the sizer's search order."""
    found = []
    for inst in CATALOG.values():
        if req.families and inst.family not in req.families:
            continue
        for tp in inst.allowed_tp:
            est = estimate_memory(
                arch, inst, tp, dtype=req.dtype, kv_cache_dtype=req.kv_cache_dtype,
                max_model_len=req.max_model_len, max_num_seqs=req.max_num_seqs,
            )
            if est.fits:
                found.append((inst.name, tp, inst.price_per_hour))
    return found


def _price(value: float | None) -> float:
    return float("inf") if value is None else value


@PROPERTY
@given(requests)
def test_result_fits_and_tp_is_allowed(req: SizingRequest) -> None:
    result = _try(req)
    if result is None:
        return
    assert result.required_gib <= result.capacity_gib
    assert result.host_memory_gib <= result.instance.memory_gib
    assert result.tensor_parallel in result.instance.allowed_tp
    assert result.tensor_parallel in FAMILY_TP[result.instance.family]
    assert result.neuron_devices * result.instance.cores_per_device >= result.tensor_parallel
    assert not req.families or result.instance.family in req.families
    assert result.tokens_per_second > 0


@PROPERTY
@given(requests)
def test_choice_is_the_cheapest_fitting_candidate(req: SizingRequest) -> None:
    fitting = _fitting(req, resolve_architecture(req))
    result = _try(req)
    if result is None:
        assert fitting == []
        return
    assert min(_price(p) for _, _, p in fitting) == _price(result.price_per_hour)
    on_instance = [tp for name, tp, _ in fitting if name == result.instance.name]
    assert result.tensor_parallel == min(on_instance)


@PROPERTY
@given(requests, st.integers(min_value=1, max_value=64), st.sampled_from(sorted(CATALOG)))
def test_more_sequences_never_need_fewer_cores_on_an_instance(req: SizingRequest, extra: int, name: str) -> None:
    pinned = SizingRequest(**{**req.__dict__, "instance_type": name, "families": ()})
    more = SizingRequest(**{**pinned.__dict__, "max_num_seqs": pinned.max_num_seqs + extra})
    small, big = _try(pinned), _try(more)
    if big is not None:
        assert small is not None
        assert big.neuron_cores >= small.neuron_cores


@PROPERTY
@given(requests, st.integers(min_value=1, max_value=64))
def test_more_sequences_never_pick_a_cheaper_instance(req: SizingRequest, extra: int) -> None:
    # Across instances the core count can drop (a costlier instance with bigger cores may need fewer of them),
    # but the price per hour never does.
    more = SizingRequest(**{**req.__dict__, "max_num_seqs": req.max_num_seqs + extra})
    small, big = _try(req), _try(more)
    if big is not None:
        assert small is not None
        assert _price(big.price_per_hour) >= _price(small.price_per_hour)
