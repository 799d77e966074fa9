"""Per-engine PromQL and pod selection for the autoscaler's metrics.

Covers: string-literal escaping round-trips for any text (hypothesis), RE2 escaping of Deployment names,
the Deployment pod regex (matches its pods, not a sibling Deployment's whose name extends it), label-key
sanitization, the queries and metric names per engine (vLLM, TGI, DJL-LMI), the optional signals as one tagged
query, and clear errors for bad targets and rate windows.
"""

from __future__ import annotations

import ast
import re
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from neuroscale.autoscale.promql import (
    SIGNAL_LABEL,
    SIGNALS,
    MetricsTarget,
    check_rate_window,
    engine_queries,
    promql,
    promql_string,
    re2_escape,
    series_selector,
    signals_query,
)


def make_target(**overrides: object) -> MetricsTarget:
    values: dict[str, object] = {"namespace": "ml", "engine": "vllm", "pod_regex": "llama-[a-z0-9]+-[a-z0-9]+"}
    values.update(overrides)
    return MetricsTarget(**values)  # type: ignore[arg-type]


@given(st.text())
def test_string_literal_round_trips_any_text(text: str) -> None:
    # PromQL strings use Go escapes; for the escapes we emit, Python's literal syntax decodes identically.
    literal = promql_string(text)
    assert ast.literal_eval(literal) == text
    assert "\n" not in literal


@given(st.text(alphabet=st.characters(codec="ascii")))
def test_re2_escape_matches_the_text_and_nothing_longer(text: str) -> None:
    pattern = re2_escape(text)
    assert re.fullmatch(pattern, text)
    assert not re.fullmatch(pattern, text + "x")


def test_deployment_regex_selects_its_pods_only() -> None:
    target = MetricsTarget.for_deployment("ml", "llama", "vllm")
    pattern = target.pod_regex
    assert pattern is not None
    assert re.fullmatch(pattern, "llama-7d9f8b6c5d-x2kq9")
    assert not re.fullmatch(pattern, "llama-8b-7d9f8b6c5d-x2kq9")
    assert not re.fullmatch(pattern, "llama-7d9f8b6c5d")
    assert not re.fullmatch(pattern, "other-llama-7d9f8b6c5d-x2kq9")


def test_deployment_name_with_metacharacters_is_literal() -> None:
    target = MetricsTarget.for_deployment("ml", "a.b", "vllm")
    assert target.pod_regex is not None
    assert re.fullmatch(target.pod_regex, "a.b-5d-x2kq9")
    assert not re.fullmatch(target.pod_regex, "axb-5d-x2kq9")


def test_selector_escapes_values_and_sanitizes_label_keys() -> None:
    target = make_target(
        namespace='we"ird', pod_regex=None, pod_selector={"app.kubernetes.io/name": "a\\b", "tier": "x"}
    )
    assert series_selector(target) == '{namespace="we\\"ird",app_kubernetes_io_name="a\\\\b",tier="x"}'


@pytest.mark.parametrize(
    ("engine", "tokens_metric", "queue_metric"),
    [
        ("vllm", "rate(vllm:generation_tokens_total{", "vllm:num_requests_waiting{"),
        ("tgi", "rate(tgi_request_generated_tokens_sum{", "tgi_queue_size{"),
        ("djl-lmi", "TokenThroughput{", None),
    ],
)
def test_engine_queries_use_the_engine_metric_names(engine: str, tokens_metric: str, queue_metric: str | None) -> None:
    target = make_target(engine=engine)
    queries = engine_queries(target, "30s")
    assert tokens_metric in queries.tokens_per_second
    assert queries.tokens_per_second.startswith(("sum by (namespace, pod)", "avg by (namespace, pod)"))
    assert "timestamp(" in queries.last_sample
    if queue_metric is None:
        assert queries.queue_depth is None
    else:
        assert queries.queue_depth is not None and queue_metric in queries.queue_depth
    for query in (queries.tokens_per_second, queries.last_sample):
        assert series_selector(target) in query


def test_rate_window_is_spliced_into_counter_queries() -> None:
    tokens, queue = promql("vllm", make_target(), rate_window="45s")
    assert tokens.endswith("[45s]))")
    selector = '{namespace="ml",pod=~"llama-[a-z0-9]+-[a-z0-9]+"}'
    assert queue == f"sum by (namespace, pod) (vllm:num_requests_waiting{selector})"


def test_promql_refuses_an_engine_other_than_the_targets() -> None:
    with pytest.raises(ValueError, match="does not match"):
        promql("tgi", make_target())


@pytest.mark.parametrize("window", ["", "2", "5m) or vector(1", "1m30s", "0s", "-1m"])
def test_rate_window_rejects_non_durations(window: str) -> None:
    with pytest.raises(ValueError, match="PromQL duration"):
        check_rate_window(window)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"namespace": ""}, "namespace must not be empty"),
        ({"engine": "triton"}, "unknown engine"),
        ({"pod_regex": None}, "needs pod_regex or pod_selector"),
        ({"pod_selector": {"1abc": "x"}}, "cannot be a Prometheus label name"),
        ({"min_reporting_pods": 0}, "at least 1"),
    ],
)
def test_bad_targets_get_clear_errors(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_target(**overrides)


def test_empty_deployment_name_is_rejected() -> None:
    with pytest.raises(ValueError, match="deployment name"):
        MetricsTarget.for_deployment("ml", "", "vllm")


def test_targets_with_selectors_are_hashable_values() -> None:
    first = make_target(pod_selector={"b": "2", "a": "1"})
    second = make_target(pod_selector={"a": "1", "b": "2"})
    assert first == second
    assert len({first, second}) == 1


@pytest.mark.parametrize(("engine", "names"), [
    ("vllm", ["prompt_tokens_per_second", "requests_per_second", "running", "kv_cache_usage"]),
    ("tgi", ["prompt_tokens_per_second", "requests_per_second", "running"]),
    ("djl-lmi", ["running"]),
])
def test_optional_signals_are_one_tagged_query(engine: str, names: list[str]) -> None:
    target = make_target(engine=engine)
    queries = engine_queries(target, "30s")
    assert [name for name, _ in queries.signals] == names
    assert set(names) <= set(SIGNALS)
    combined = signals_query(queries)
    assert combined is not None
    for name, query in queries.signals:
        assert series_selector(target) in query
        assert f'label_replace({query}, "{SIGNAL_LABEL}", "{name}", "", "")' in combined
    assert combined.count(" or label_replace(") == len(names) - 1


def test_signal_queries_use_the_engine_metric_names() -> None:
    vllm = dict(engine_queries(make_target(), "30s").signals)
    assert "rate(vllm:prompt_tokens_total{" in vllm["prompt_tokens_per_second"]
    assert "rate(vllm:request_success_total{" in vllm["requests_per_second"]
    assert "vllm:kv_cache_usage_perc{" in vllm["kv_cache_usage"], "the current name"
    assert "vllm:gpu_cache_usage_perc{" in vllm["kv_cache_usage"], "the name older images emit"
    tgi = dict(engine_queries(make_target(engine="tgi"), "30s").signals)
    assert "rate(tgi_request_input_length_sum{" in tgi["prompt_tokens_per_second"]
    assert "rate(tgi_request_generated_tokens_count{" in tgi["requests_per_second"]


def test_no_signals_no_query() -> None:
    assert signals_query(replace(engine_queries(make_target(), "30s"), signals=())) is None
