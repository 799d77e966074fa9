"""Unit tests of the policy's SLO feedback loop on the queue (`neuroscale.autoscale.policy`, learned utilization).

Covers: on steady Poisson-noisy load without waiting requests u climbs to the ceiling and stays there, no faster
than one horizon; waiting requests lower u (multiplicatively, at most once per horizon) and the lower u asks for
more replicas; u never leaves [floor, ceiling] whatever the samples or the restored state; a missing queue metric
leaves u alone; the learned u survives to_dict/from_dict (and JSON), old or bad state falls back to the default;
default_config derives floor, ceiling and allowance; a PolicyConfig without bounds keeps u fixed.
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from neuroscale.autoscale.policy import Observation, PolicyConfig, ScalerState, decide, default_config

CAPACITY = 400.0
EVERY = 15.0


def make_config(**overrides: object) -> PolicyConfig:
    base = default_config(CAPACITY, 300.0, max_replicas=60, tokens_per_request=200.0,
                          learn_headroom=False)
    return dataclasses.replace(base, **overrides)


def poisson_load(seconds: float, requests_per_s: float, tokens_per_request: float, seed: int,
                 queued: set[int] = frozenset(), since: float = 0.0) -> list[Observation]:
    """2-minute token rates of Poisson arrivals, one sample per control interval; ``queued`` marks samples
    (by index) that saw waiting requests."""
    rng = np.random.default_rng(seed)
    samples = []
    for k in range(int(seconds / EVERY)):
        rate = rng.poisson(requests_per_s * 120) / 120 * tokens_per_request
        samples.append(Observation(since + k * EVERY, rate, 3.0 if k in queued else 0.0, 10))
    return samples


def replay(config: PolicyConfig, series: list[Observation], replicas: int = 10,
           state: ScalerState | None = None) -> tuple[list[float], list[int], ScalerState]:
    learned, history = [], []
    for index, obs in enumerate(series):
        decision = decide(obs.at, series[: index + 1], replicas, state, config)
        replicas, state = decision.replicas, decision.state
        learned.append(state.utilization)
        history.append(replicas)
    assert state is not None
    return learned, history, state


def test_default_config_derives_the_loop_from_the_default_utilization_and_slo():
    config = default_config(CAPACITY, 600.0, slo_underprovisioned_fraction=0.02)
    assert (config.utilization, config.utilization_floor) == (0.85, 0.85)
    assert config.utilization_ceiling == pytest.approx(0.90)
    assert config.queued_sample_allowance == 0.02
    wider = default_config(CAPACITY, 600.0, utilization=0.8, utilization_floor=0.6, utilization_ceiling=0.95)
    assert (wider.utilization_floor, wider.utilization, wider.utilization_ceiling) == (0.6, 0.8, 0.95)
    with pytest.raises(ValueError, match="utilization_floor"):
        default_config(CAPACITY, 600.0, utilization_floor=0.9)


def test_steady_load_without_queueing_converges_to_the_ceiling_no_faster_than_a_horizon():
    config = make_config()
    series = poisson_load(4 * config.horizon_s, requests_per_s=20.0, tokens_per_request=200.0, seed=3)
    learned, history, _ = replay(config, series)
    per_horizon = int(config.horizon_s / EVERY)
    assert learned[: per_horizon - 1] == [pytest.approx(0.85)] * (per_horizon - 1), "a horizon of evidence first"
    assert all(b >= a for a, b in zip(learned, learned[1:])), "no queueing: u only rises"
    ceiling = config.utilization_ceiling
    assert ceiling is not None
    first_at_ceiling = next(i for i, u in enumerate(learned) if u == pytest.approx(ceiling))
    assert first_at_ceiling >= 2 * per_horizon - 2, "floor to ceiling takes at least one more horizon"
    assert learned[-1] == pytest.approx(ceiling)
    # The learned u is what sizes the fleet: 4,000 tok/s at 0.90 × 400 tok/s per replica.
    assert history[-1] == math.ceil(series[-1].tokens_per_second / (CAPACITY * ceiling) - 1e-9)


def test_waiting_requests_lower_u_at_most_once_per_horizon_and_ask_for_more_replicas():
    config = make_config(utilization_floor=0.6)
    per_horizon = int(config.horizon_s / EVERY)
    calm = poisson_load(4 * config.horizon_s, 20.0, 200.0, seed=5)
    learned, history, state = replay(config, calm)
    assert learned[-1] == pytest.approx(config.utilization_ceiling)
    burst = poisson_load(2 * config.horizon_s, 20.0, 200.0, seed=6, since=calm[-1].at + EVERY,
                         queued=set(range(0, 2 * per_horizon, 3)))
    after, bursty_history, _ = replay(config, calm + burst, state=None)
    during = after[len(calm):]
    drops = [i for i, (a, b) in enumerate(zip(during, during[1:])) if b < a - 1e-12]
    assert drops, "queueing must lower u"
    assert all(b - a >= per_horizon - 1 for a, b in zip(drops, drops[1:])), "at most once per horizon"
    assert min(during) >= config.utilization_floor
    assert min(during) < learned[-1]
    assert max(bursty_history[len(calm):]) > history[-1], "a lower u asks for more replicas"


def test_a_missing_queue_metric_leaves_u_alone():
    config = make_config()
    state = ScalerState(utilization=0.88)
    series = [dataclasses.replace(o, queue_depth=None) for o in poisson_load(2 * config.horizon_s, 20.0, 200.0, 1)]
    decision = decide(series[-1].at, series, 10, state, config)
    assert decision.state.utilization == 0.88
    assert decision.metrics_healthy


def test_a_config_without_bounds_keeps_u_fixed():
    config = make_config(utilization_floor=None, utilization_ceiling=None)
    learned, _, _ = replay(config, poisson_load(4 * config.horizon_s, 20.0, 200.0, seed=2))
    assert set(learned) == {config.utilization}
    with pytest.raises(ValueError, match="set together"):
        make_config(utilization_ceiling=None)


@settings(max_examples=150, deadline=None)
@given(queues=st.lists(st.one_of(st.none(), st.floats(0, 50), st.just(0.0)), min_size=1, max_size=80),
       restored=st.one_of(st.none(), st.floats(0.01, 1.0)), floor=st.floats(0.3, 0.9), span=st.floats(0, 0.1),
       lowered=st.one_of(st.none(), st.floats(-5_000, 2_000)))
def test_u_never_leaves_floor_and_ceiling(queues, restored, floor, span, lowered):
    ceiling = min(1.0, floor + span)
    config = make_config(utilization=floor, utilization_floor=floor, utilization_ceiling=ceiling)
    series = [Observation(k * EVERY, 3_000.0, q, 10) for k, q in enumerate(queues)]
    state = ScalerState(utilization=restored, utilization_lowered_at=lowered)
    for index, obs in enumerate(series):
        decision = decide(obs.at, series[: index + 1], 10, state, config)
        state = decision.state
        assert state.utilization is not None and floor - 1e-12 <= state.utilization <= ceiling + 1e-12


def test_learned_u_round_trips_and_old_or_bad_state_falls_back():
    config = make_config()
    _, _, state = replay(config, poisson_load(3 * config.horizon_s, 20.0, 200.0, seed=4, queued={40}))
    assert state.utilization is not None and state.utilization_lowered_at is not None
    restored = ScalerState.from_dict(json.loads(json.dumps(state.to_dict())))
    assert restored == state
    old = {"scaleUps": [[0.0, 2]], "recommendations": [], "lastChangeAt": 0.0}
    assert ScalerState.from_dict(old) == ScalerState(scale_ups=((0.0, 2),), last_change_at=0.0)
    assert ScalerState.from_dict({**state.to_dict(), "utilization": 7.0}) == ScalerState()
    assert ScalerState.from_dict({**state.to_dict(), "utilization": "high"}) == ScalerState()
