"""Unit tests of the pure autoscaling policy (`neuroscale.autoscale.policy`).

Covers: properties over random inputs (never above max, never below min, never scales down or to zero on missing
or stale data, steps bounded by the configured limits); bursts scale up at once, dips scale down only after the
stabilization window; queue build-up adds replicas; starting replicas are not asked for twice; the predictive term
scales ahead of a steady ramp but not on a flat noisy series; state round-trips through JSON; default_config
derivations; bad config and bad samples give clear messages instead of crashes; no I/O library is imported.
"""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroscale.autoscale.policy import Observation, PolicyConfig, ScalerState, decide, default_config

CAPACITY = 400.0


def make_config(**overrides: object) -> PolicyConfig:
    base = default_config(CAPACITY, 300.0, min_replicas=1, max_replicas=40, tokens_per_request=200.0,
                          learn_headroom=False)
    return dataclasses.replace(base, **overrides)


def steady(tokens: float, *, until: float = 600.0, every: float = 15.0, queue: float = 0.0, ready: int = 5,
           since: float = 0.0) -> list[Observation]:
    return [Observation(at=since + k * every, tokens_per_second=tokens, queue_depth=queue, ready_replicas=ready)
            for k in range(int((until - since) / every) + 1)]


def run(config: PolicyConfig, series: list[Observation], start_replicas: int, every: float = 15.0) -> list[int]:
    """Call decide at every sample time as the operator's timer would, feeding back replicas and state."""
    replicas, state, history = start_replicas, None, []
    for index, obs in enumerate(series):
        decision = decide(obs.at, series[: index + 1], replicas, state, config)
        replicas, state = decision.replicas, decision.state
        history.append(replicas)
    return history


observations_strategy = st.lists(
    st.builds(Observation,
              at=st.floats(0, 1000),
              tokens_per_second=st.one_of(st.none(), st.floats(0, 50_000), st.just(math.nan), st.just(-5.0)),
              queue_depth=st.one_of(st.none(), st.floats(0, 5_000)),
              ready_replicas=st.integers(0, 60)),
    max_size=30)


@settings(max_examples=300, deadline=None)
@given(observations=observations_strategy, current=st.integers(0, 80), now=st.floats(0, 1200),
       min_replicas=st.integers(0, 5), span=st.integers(1, 40), up=st.one_of(st.none(), st.integers(1, 6)),
       down=st.one_of(st.none(), st.integers(1, 6)), predictive=st.booleans())
def test_decision_stays_within_bounds_and_steps(observations, current, now, min_replicas, span, up, down,
                                                predictive):
    config = make_config(min_replicas=min_replicas, max_replicas=max(min_replicas, 1) + span,
                         max_scale_up_step=up, max_scale_down_step=down, predictive=predictive)
    decision = decide(now, observations, current, None, config)
    assert config.min_replicas <= decision.replicas <= config.max_replicas
    clamped = min(max(current, config.min_replicas), config.max_replicas)
    if decision.replicas > clamped and up is not None:
        assert decision.replicas - clamped <= up
    if decision.replicas < clamped and down is not None:
        assert clamped - decision.replicas <= down
    assert json.loads(json.dumps(decision.state.to_dict())) == decision.state.to_dict()


@settings(max_examples=200, deadline=None)
@given(current=st.integers(1, 40), age=st.floats(46, 10_000), tokens=st.floats(0, 100),
       missing=st.sampled_from(["none", "stale", "nan"]))
def test_missing_or_stale_data_never_scales_down(current, age, tokens, missing):
    config = make_config()
    now = 20_000.0
    if missing == "none":
        series = [Observation(now - 5, None, None, current)]
    elif missing == "stale":
        series = [Observation(now - age, tokens, 0.0, current)]
    else:
        series = [Observation(now - 5, math.nan, 0.0, current)]
    decision = decide(now, series, current, None, config)
    assert decision.replicas == current
    assert decision.metrics_healthy is False
    assert "failing static" in decision.reason


def test_no_data_at_all_holds_and_never_goes_to_zero():
    config = make_config(min_replicas=0)
    decision = decide(100.0, [], 3, None, config)
    assert (decision.replicas, decision.metrics_healthy) == (3, False)
    assert "no token-throughput sample" in decision.reason


def test_burst_scales_up_at_once_bounded_by_step():
    config = make_config(max_scale_up_step=3, predictive=False)
    series = steady(1_000.0, until=300.0, ready=3) + steady(6_000.0, since=315.0, until=420.0, ready=3)
    history = run(config, series, start_replicas=3)
    assert history[20] == 3
    assert history[21:24] == [6, 9, 12]
    assert history[-1] == math.ceil(6_000 / config.target_tokens_per_replica)


def test_dip_scales_down_only_after_the_stabilization_window():
    config = make_config(scale_down_stabilization_s=300.0, predictive=False)
    series = steady(6_800.0, until=300.0, ready=20) + steady(1_700.0, since=315.0, until=900.0, ready=20)
    history = run(config, series, start_replicas=20)
    dip = 21  # index of the first low sample, at t=315
    assert set(history[dip: dip + 19]) == {20}, "no scale-down inside the 300 s window after the last high need"
    assert history[-1] == math.ceil(1_700 / config.target_tokens_per_replica)
    assert sum(1 for a, b in zip(history, history[1:]) if a != b) == 1, "one step down, no flapping"


def test_queue_build_up_adds_replicas():
    config = make_config(predictive=False)
    # Derived target: the requests one replica drains in a cold start (300 s × 400 tok/s ÷ 200 tokens a request).
    per_replica = CAPACITY * config.queue_drain_s / 200.0
    assert per_replica == 600.0 and config.queue_target_per_replica is None
    base = decide(600.0, steady(3_400.0, queue=0.0, ready=10), 10, None, config)
    queued = decide(600.0, steady(3_400.0, queue=4 * per_replica, ready=10), 10, None, config)
    assert base.replicas == 10
    assert queued.replicas == 14
    assert "queued" in queued.reason


def test_queue_is_weighed_by_the_measured_work_per_request():
    config = make_config(predictive=False)
    # The engines finish 3,400 ÷ 400 = 8.5 requests/s: 400 tokens each, twice the configured 200.
    measured = [dataclasses.replace(o, requests_per_second=o.tokens_per_second / 400.0)
                for o in steady(3_400.0, queue=4 * 600.0, ready=10)]
    assert decide(600.0, measured, 10, None, config).replicas == 18
    explicit = dataclasses.replace(config, queue_target_per_replica=1_200.0)
    assert decide(600.0, measured, 10, None, explicit).replicas == 12, "a queue target the user set is kept"


def test_starting_replicas_count_as_arriving_capacity():
    config = make_config(predictive=False)
    first = decide(0.0, steady(6_800.0, until=0.0, ready=10), 10, None, config)
    assert first.replicas == 20
    # Ten replicas are still starting: the same demand must not ask for them again.
    later = decide(60.0, steady(6_800.0, until=60.0, ready=10), first.replicas, first.state, config)
    assert later.replicas == 20
    assert "10 starting" in later.reason


def test_predictive_term_scales_ahead_of_a_ramp_but_not_on_noise():
    config = make_config()
    ramp = [Observation(15.0 * k, 2_000.0 + 4.0 * 15 * k, 0.0, 10) for k in range(25)]
    reactive = decide(ramp[-1].at, ramp, 10, None, dataclasses.replace(config, predictive=False))
    predictive = decide(ramp[-1].at, ramp, 10, None, config)
    assert predictive.replicas > reactive.replicas
    assert "forecast" in predictive.reason
    noisy = [Observation(15.0 * k, 3_000.0 + (300.0 if k % 2 else -300.0), 0.0, 10) for k in range(25)]
    # From one replica: the level's need, nothing for the noise.
    assert decide(noisy[-1].at, noisy, 1, None, config).replicas == math.ceil(
        noisy[-1].tokens_per_second / config.target_tokens_per_replica)


def test_state_round_trips_and_bad_state_is_reset():
    config = make_config(predictive=False)
    decision = decide(0.0, steady(6_800.0, until=0.0), 10, None, config)
    restored = ScalerState.from_dict(json.loads(json.dumps(decision.state.to_dict())))
    assert restored == decision.state
    assert ScalerState.from_dict({"scaleUps": [["x", "y"]]}) == ScalerState()
    assert ScalerState.from_dict(None) == ScalerState()


def test_reason_reads_like_the_issue_example():
    config = make_config(predictive=False)
    decision = decide(0.0, steady(1_840.0, until=0.0, queue=2.0, ready=3), 3, None, config)
    assert decision.reason.startswith("scale up 3→")
    assert "1,840 tok/s demand + 2 queued" in decision.reason


def test_default_config_derivations():
    config = default_config(400.0, 600.0, max_replicas=30, tokens_per_request=200.0, queue_wait_slo_s=30.0,
                            slo_underprovisioned_fraction=0.01)
    assert config.target_tokens_per_replica == pytest.approx(340.0)
    assert config.queue_target_per_replica is None and config.queue_drain_s == 600.0
    assert config.safety_z == pytest.approx(2.326, abs=1e-3)
    assert config.scale_down_stabilization_s == 120.0, "learned headroom: one rate window"
    assert config.headroom_quantile == pytest.approx(0.99) and config.queue_wait_slo_s == 30.0
    assert default_config(400.0, 600.0, learn_headroom=False).scale_down_stabilization_s == 300.0
    assert default_config(400.0, 30.0).scale_down_stabilization_s == 90.0
    assert config.horizon_s == 600 + 60 + 15
    assert config.max_scale_up_step == 15


@pytest.mark.parametrize("overrides, message", [
    ({"min_replicas": 5, "max_replicas": 2}, "max_replicas"),
    ({"target_tokens_per_replica": 0.0}, "target_tokens_per_replica"),
    ({"cold_start_s": -1.0}, "cold_start_s"),
    ({"max_scale_up_step": 0}, "max_scale_up_step"),
])
def test_bad_config_is_rejected_with_the_field_named(overrides, message):
    with pytest.raises(ValueError, match=message):
        make_config(**overrides)


def test_bad_default_config_inputs_are_rejected():
    with pytest.raises(ValueError, match="capacity"):
        default_config(0.0, 60.0)
    with pytest.raises(ValueError, match="utilization"):
        default_config(400.0, 60.0, utilization=1.5)


def test_policy_imports_no_io_library():
    code = ("import sys, neuroscale.autoscale.policy, neuroscale.autoscale.baselines, "
            "neuroscale.autoscale.simulator, neuroscale.autoscale.traces; "
            "print(sorted(m for m in ('kopf','boto3','botocore','kubernetes','aiohttp') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"


def test_headroom_is_learned_from_demand_growth_and_survives_a_restart():
    config = default_config(CAPACITY, 60.0, max_replicas=40, tokens_per_request=200.0)
    state = None
    observations: list[Observation] = []
    # Demand alternates between 10 and 14 replicas' worth every horizon (135 s): growth of 4 replicas recurs.
    for k in range(200):
        now = 15.0 * k
        level = 10 if (now // config.horizon_s) % 2 == 0 else 14
        observations.append(Observation(now, level * CAPACITY, 0.0, 20))
        decision = decide(now, observations[-40:], 20, state, config)
        state = decision.state
    # The 99th percentile of growth over one horizon (4 replicas), less what the queue absorbs within the SLO
    # while the new capacity starts (SLO × demand ÷ horizon; demand is at its low level of 10 now).
    assert state.headroom == pytest.approx(4.0 - config.queue_wait_slo_s * 10 / config.horizon_s)
    assert decision.replicas >= 14 + 3 - 1, "the high level's need is still held by the scale-down window"
    restored = ScalerState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored.headroom == pytest.approx(state.headroom, abs=1e-4) and restored.growths == state.growths
    assert restored.slo_attainment == 1.0, "an empty queue meets the SLO"
    queued = decide(3_000.0, [Observation(3_000.0, 10 * CAPACITY, 1_000.0, 2)], 20, restored, config).state
    assert queued.slo_checks == restored.slo_checks + 1 and queued.slo_met == restored.slo_met
    capped = dataclasses.replace(config, headroom_cap=0.1)
    assert decide(3_000.0, observations[-40:], 20, state, capped).state.headroom <= 0.1 * 14 + 1e-9


@pytest.mark.parametrize("queue, held_s", [(0.0, 60.0), (1.0, 120.0)])
def test_scale_down_waits_one_metric_lag_while_the_queue_stays_empty(queue, held_s):
    config = default_config(CAPACITY, 300.0, max_replicas=40, tokens_per_request=200.0)
    assert (config.metric_lag_s, config.scale_down_stabilization_s) == (60.0, 120.0)
    series = steady(20 * CAPACITY, until=1_185.0, queue=queue, ready=21) + steady(
        10 * CAPACITY, since=1_200.0, until=1_500.0, queue=queue, ready=21)
    history = run(config, series, 21)
    after_drop = [replicas for obs, replicas in zip(series, history) if obs.at >= 1_200.0]
    high = history[len(series) - len(after_drop) - 1]
    assert high >= 20
    steps_held = int(held_s // 15)
    assert after_drop[:steps_held] == [high] * steps_held, "held for the stabilization window"
    assert after_drop[steps_held + 1] < high, "released right after it"
