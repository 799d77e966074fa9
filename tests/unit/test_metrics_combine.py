"""How one read's answers become a MetricsReading (autoscale/metrics.py `_per_signal` and `_combine`), without a server.

Covers: the tagged signals query's answer split by signal and pod (NaN skipped, untagged series under ""), anything
but an instant vector refused; required signals deciding which pods count; optional signals summed over exactly
those pods (a stale pod's or a sibling's value left out), KV-cache usage averaged; a signal one counted pod lacks →
None while the reading stays usable; an engine with no optional signals; a failed reading carrying no optional
values.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from neuroscale.autoscale.metrics import MetricsProblem, _BadAnswer, _combine, _per_signal
from neuroscale.autoscale.promql import SIGNAL_LABEL, MetricsTarget

NOW = 1_700_000_000.0
TARGET = MetricsTarget.for_deployment("ml", "llama", "vllm", min_reporting_pods=2)
A, B, STALE = "ml/llama-5d-aaaaa", "ml/llama-5d-bbbbb", "ml/llama-5d-ccccc"


def series(pod: str, value: float, signal: str | None = None) -> dict[str, Any]:
    namespace, name = pod.split("/")
    labels = {"namespace": namespace, "pod": name, **({SIGNAL_LABEL: signal} if signal else {})}
    return {"metric": labels, "value": [NOW, str(value)]}


def combine(signals: dict[str, dict[str, float]], target: MetricsTarget = TARGET) -> Any:
    tokens = {A: 100.0, B: 50.0, STALE: 1000.0}
    queue = {A: 1.0, B: 2.0, STALE: 30.0}
    last_sample = {A: NOW - 5, B: NOW - 5, STALE: NOW - 600}
    return _combine(target, NOW, 60.0, tokens, queue, last_sample, signals)


def test_the_tagged_answer_splits_by_signal_and_pod() -> None:
    answer = [series(A, 7.0, "running"), series(B, 3.0, "running"), series(A, 0.5, "kv_cache_usage"),
              series(B, math.nan, "kv_cache_usage"), series(A, 42.0)]
    assert _per_signal(answer) == {"running": {A: 7.0, B: 3.0}, "kv_cache_usage": {A: 0.5}, "": {A: 42.0}}


@pytest.mark.parametrize("answer", [{"resultType": "scalar"}, [{"metric": {}, "value": [NOW, "many"]}],
                                    [{"metric": {}}]])
def test_anything_but_an_instant_vector_is_refused(answer: object) -> None:
    with pytest.raises(_BadAnswer, match="instant vector"):
        _per_signal(answer)


def test_optional_signals_cover_exactly_the_pods_the_required_ones_keep() -> None:
    reading = combine({
        "prompt_tokens_per_second": {A: 2000.0, B: 1000.0, STALE: 9999.0, "ml/llama-8b-5d-zzzzz": 5.0},
        "requests_per_second": {A: 0.5, B: 0.25},
        "running": {A: 6.0, B: 2.0},
        "kv_cache_usage": {A: 0.75, B: 0.25, STALE: 1.0},
    })
    assert reading.error is None and reading.ready_pods_reporting == 2
    assert (reading.tokens_per_second, reading.queue_depth) == (150.0, 3.0), "the stale pod is left out"
    assert reading.prompt_tokens_per_second == 3000.0
    assert reading.requests_per_second == 0.75
    assert reading.running == 8.0
    assert reading.kv_cache_usage == pytest.approx(0.5), "a mean, not a sum"


def test_a_signal_one_counted_pod_lacks_is_none_and_the_reading_stays_usable() -> None:
    reading = combine({"prompt_tokens_per_second": {A: 2000.0}, "running": {A: 6.0, B: 2.0}})
    assert reading.error is None and reading.reason is None
    assert reading.tokens_per_second == 150.0
    assert reading.prompt_tokens_per_second is None, "never a partial sum"
    assert reading.running == 8.0
    assert reading.kv_cache_usage is None and reading.requests_per_second is None


def test_an_engine_without_optional_signals_reads_as_before() -> None:
    reading = combine({})
    assert (reading.tokens_per_second, reading.queue_depth, reading.error) == (150.0, 3.0, None)
    assert (reading.prompt_tokens_per_second, reading.running, reading.kv_cache_usage,
            reading.requests_per_second) == (None, None, None, None)


def test_a_failed_reading_carries_no_optional_values() -> None:
    three = MetricsTarget.for_deployment("ml", "llama", "vllm", min_reporting_pods=3)
    reading = combine({"running": {A: 6.0, B: 2.0, STALE: 1.0}}, target=three)
    assert reading.reason == MetricsProblem.METRICS_STALE
    assert reading.running is None and reading.tokens_per_second is None
