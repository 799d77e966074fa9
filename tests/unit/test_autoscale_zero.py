"""The 0↔1 decisions of a minReplicas-0 ModelDeployment (autoscale/zero.py) and the gateway-demand PromQL.

Covers: waking on gateway demand, holding zero without demand and reporting a missing demand reading as unhealthy;
the idle clock (starts on the first all-zero reading, reset by any token, queue or demand, never started by a missing
reading) and the scale to zero after exactly the derived idle period; the idle period derived from the cold start
with the metric window as its floor; config validation; over random reading sequences (hypothesis): a sleep only
after a full idle period of readings, never on missing data, and a wake whenever demand shows at zero; the demand
query's exact text and escaping; rate windows read as seconds.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroscale.autoscale.promql import gateway_demand_query, window_seconds
from neuroscale.autoscale.zero import ZeroConfig, ZeroInputs, decide_zero

CONFIG = ZeroConfig(idle_before_zero_s=600.0)


def seen(current: int, tokens: float | None = 0.0, queue: float | None = 0.0,
         demand: float | None = 0.0) -> ZeroInputs:
    return ZeroInputs(current, tokens, queue, demand)


def test_wakes_on_gateway_demand() -> None:
    decision = decide_zero(100.0, seen(0, tokens=None, queue=None, demand=3.0), None, CONFIG)
    assert decision.replicas == 1 and decision.metrics_healthy
    assert decision.reason.startswith("scale up 0→1: 3 requests waited")


def test_holds_zero_without_demand_and_says_when_demand_is_unknown() -> None:
    quiet = decide_zero(100.0, seen(0, tokens=None, queue=None, demand=0.0), None, CONFIG)
    assert (quiet.replicas, quiet.metrics_healthy) == (0, True)
    unknown = decide_zero(100.0, seen(0, tokens=None, queue=None, demand=None), None, CONFIG)
    assert (unknown.replicas, unknown.metrics_healthy) == (0, False)
    assert "no cascade gateway reports demand" in unknown.reason


def test_idle_clock_and_sleep_after_the_idle_period() -> None:
    first = decide_zero(1000.0, seen(1), None, CONFIG)
    assert first.replicas is None and first.idle_since == 1000.0
    assert first.note == "idle 0s of 600s before scaling to zero"
    almost = decide_zero(1599.0, seen(1), first.idle_since, CONFIG)
    assert almost.replicas is None and almost.idle_since == 1000.0
    done = decide_zero(1600.0, seen(1), almost.idle_since, CONFIG)
    assert done.replicas == 0 and done.idle_since is None
    assert done.reason.startswith("scale down 1→0: idle for 600s")


@pytest.mark.parametrize("busy", [
    seen(1, tokens=5.0), seen(1, queue=1.0), seen(1, demand=2.0), seen(1, tokens=None), seen(3, tokens=0.5),
])
def test_activity_or_a_missing_reading_resets_the_idle_clock(busy: ZeroInputs) -> None:
    decision = decide_zero(5000.0, busy, 100.0, CONFIG)
    assert decision.replicas is None and decision.idle_since is None and decision.note == ""


def test_missing_queue_metric_does_not_block_sleep_but_missing_demand_does_not_count_as_demand() -> None:
    # DJL-LMI has no queue gauge; no gateway series is not demand (the deployment may serve direct clients only).
    assert decide_zero(700.0, seen(1, queue=None, demand=None), 100.0, CONFIG).replicas == 0


def test_idle_period_derived_from_cold_start_with_the_metric_window_as_floor() -> None:
    assert ZeroConfig.derived(600, 120).idle_before_zero_s == 600
    assert ZeroConfig.derived(30, 120).idle_before_zero_s == 120
    assert ZeroConfig.derived(0, 120).idle_before_zero_s == 120


@pytest.mark.parametrize("bad", [0.0, -1.0, float("inf"), float("nan")])
def test_config_rejects_a_useless_idle_period(bad: float) -> None:
    with pytest.raises(ValueError, match="idle_before_zero_s"):
        ZeroConfig(idle_before_zero_s=bad)


READING = st.one_of(st.none(), st.just(0.0), st.floats(min_value=0.001, max_value=1e4))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(READING, READING, READING), min_size=1, max_size=80),
       st.sampled_from([15.0, 60.0]), st.sampled_from([60.0, 300.0]))
def test_sequences_sleep_only_after_a_full_idle_run_and_always_wake_on_demand(
    readings: list[tuple[float | None, float | None, float | None]], step_s: float, idle_s: float,
) -> None:
    config = ZeroConfig(idle_before_zero_s=idle_s)
    replicas, idle_since, history = 1, None, []
    for tick, (tokens, queue, demand) in enumerate(readings):
        now = tick * step_s
        decision = decide_zero(now, ZeroInputs(replicas, tokens, queue, demand), idle_since, config)
        history.append((now, tokens, queue, demand))
        if replicas == 0:
            assert decision.replicas == (1 if demand is not None and demand > 1e-9 else 0)
        elif decision.replicas == 0:
            # Every reading of the last idle period was an idle one: tokens 0, queue 0 or absent, no demand.
            window = [h for h in history if now - h[0] <= idle_s]
            assert now >= idle_s
            assert all(t == 0.0 and q in (0.0, None) and not (d and d > 1e-9) for _, t, q, d in window)
        idle_since = decision.idle_since
        if decision.replicas is not None:
            replicas = decision.replicas


def test_demand_query_is_exact_and_escaped() -> None:
    assert gateway_demand_query("ml", "llama-8b", "2m") == (
        'sum(increase(neuroscale_gateway_cold_requests_total{namespace="ml",model_deployment="llama-8b"}[2m]))')
    assert 'model_deployment="a\\"b"' in gateway_demand_query("ml", 'a"b')
    with pytest.raises(ValueError):
        gateway_demand_query("ml", "x", "2 m]) or vector(1")
    with pytest.raises(ValueError):
        gateway_demand_query("ml", "")


def test_window_seconds_reads_promql_durations() -> None:
    assert [window_seconds(w) for w in ("5s", "2m", "1h", "500ms")] == [5.0, 120.0, 3600.0, 0.5]
    with pytest.raises(ValueError):
        window_seconds("2m30s")
