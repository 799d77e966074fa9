"""Unit tests of the policy's measured capacity (`policy._measured_capacity`, README "Measured capacity") and of the
rule that a fresh start does not scale down before its decisions cover the down window.

Covers: the gauges correct an estimate that is 25 % off, in either direction; without gauges, or with a fleet less
than half busy, the estimate stands; few noisy reads move it only part of the way (inverse-variance weighing);
`max_num_seqs` turns `num_requests_running` into a busy share, and the nearer-exhausted of the two gauges counts;
the measurement is kept in the state and shown in its dict; in the simulator, a policy configured 25 % optimistic
misses far less with the measurement than without it.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from neuroscale.autoscale.baselines import NeuroscaleScaler
from neuroscale.autoscale.policy import Observation, ScalerState, decide, default_config
from neuroscale.autoscale.simulator import SimulationSettings, simulate
from neuroscale.autoscale.traces import synthetic_trace

TRUE_CAPACITY = 400.0


def gauged(busy_share: float, *, ready: int = 10, count: int = 40, every: float = 15.0, noise: float = 0.0,
           seed: int = 0, running: bool = False) -> list[Observation]:
    """Reads of a fleet whose replicas each serve TRUE_CAPACITY at full load, ``busy_share`` busy on average."""
    rng = np.random.default_rng(seed)
    reads = []
    for k in range(count):
        share = min(1.0, max(0.0, busy_share + noise * rng.standard_normal()))
        reads.append(Observation(
            at=k * every, tokens_per_second=busy_share * ready * TRUE_CAPACITY, queue_depth=0.0, ready_replicas=ready,
            running=share * ready * 8 if running else None, kv_cache_usage=None if running else share))
    return reads


@pytest.mark.parametrize("error", [1.25, 0.75])
def test_gauges_correct_an_estimate_that_is_a_quarter_off(error):
    config = default_config(TRUE_CAPACITY * error, 300.0, max_replicas=40)
    reads = gauged(0.8)
    decision = decide(reads[-1].at, reads, 10, None, config)
    assert decision.state.capacity == pytest.approx(TRUE_CAPACITY)
    assert decision.state.to_dict()["capacityTokensPerSecond"] == pytest.approx(TRUE_CAPACITY)
    assert ScalerState.from_dict(decision.state.to_dict()).capacity == pytest.approx(TRUE_CAPACITY)


def test_running_requests_count_with_max_num_seqs():
    config = default_config(TRUE_CAPACITY * 1.25, 300.0, max_replicas=40, max_num_seqs=8)
    reads = gauged(0.8, running=True)
    assert decide(reads[-1].at, reads, 10, None, config).state.capacity == pytest.approx(TRUE_CAPACITY)
    # Without max_num_seqs a running count says nothing about how full a replica is.
    unknown = dataclasses.replace(config, max_num_seqs=None)
    assert decide(reads[-1].at, reads, 10, None, unknown).state.capacity is None


def test_the_nearer_exhausted_resource_counts():
    # Sequence slots half used, KV cache 80 % used (long contexts): the replicas are 80 % busy.
    config = default_config(TRUE_CAPACITY, 300.0, max_replicas=40, max_num_seqs=8)
    reads = [dataclasses.replace(o, running=0.5 * 10 * 8) for o in gauged(0.8)]
    assert decide(reads[-1].at, reads, 10, None, config).state.capacity == pytest.approx(TRUE_CAPACITY)


def test_the_estimate_stands_without_gauges_or_with_an_idle_fleet():
    config = default_config(TRUE_CAPACITY * 1.25, 300.0, max_replicas=40)
    plain = [dataclasses.replace(o, kv_cache_usage=None) for o in gauged(0.8)]
    assert decide(plain[-1].at, plain, 10, None, config).state.capacity is None
    idle = gauged(0.3)
    assert decide(idle[-1].at, idle, 10, None, config).state.capacity is None, "a small batch overstates capacity"
    few = gauged(0.8, count=7)
    assert decide(few[-1].at, few, 10, None, config).state.capacity is None, "fewer than 8 reads"
    off = dataclasses.replace(config, calibrate_capacity=False)
    reads = gauged(0.8)
    assert decide(reads[-1].at, reads, 10, None, off).state.capacity is None


def test_few_noisy_reads_move_the_estimate_only_part_of_the_way():
    estimate = TRUE_CAPACITY * 1.25
    config = default_config(estimate, 300.0, max_replicas=40)
    noisy = gauged(0.8, count=10, noise=0.3, seed=4)
    steady = gauged(0.8, count=10, noise=0.02, seed=4)
    moved_noisy = decide(noisy[-1].at, noisy, 10, None, config).state.capacity
    moved_steady = decide(steady[-1].at, steady, 10, None, config).state.capacity
    assert moved_noisy is not None and moved_steady is not None
    assert abs(moved_steady - TRUE_CAPACITY) < 0.02 * TRUE_CAPACITY
    assert abs(moved_steady - TRUE_CAPACITY) < abs(moved_noisy - TRUE_CAPACITY) < abs(estimate - TRUE_CAPACITY)


def test_a_fresh_start_does_not_scale_down_before_its_decisions_cover_the_down_window():
    config = default_config(TRUE_CAPACITY, 300.0, max_replicas=40)
    low = gauged(0.4, count=20)
    first = decide(low[-1].at, low, 20, None, config)
    assert first.replicas == 20, "no decision history yet: hold"
    replicas, state = first.replicas, first.state
    for k in range(1, 1 + math.ceil(config.scale_down_stabilization_s / 15.0)):
        later = [dataclasses.replace(o, at=o.at + 15.0 * k) for o in low]
        decision = decide(later[-1].at, later, replicas, state, config)
        replicas, state = decision.replicas, decision.state
    assert replicas < 20


def test_a_policy_configured_a_quarter_optimistic_misses_far_less_with_the_measurement():
    trace = synthetic_trace("diurnal", seed=2, duration_s=4 * 3600.0)
    trace = trace.scaled(12 * 100.0 / trace.peak(60))
    settings = SimulationSettings(100.0, 300.0)
    fleet = math.ceil(float(trace.tokens_per_s[:120].mean()) / 85.0)
    misses = {}
    for estimate, calibrate in ((125.0, False), (125.0, True), (100.0, False)):
        config = default_config(estimate, 300.0, max_replicas=40, calibrate_capacity=calibrate)
        run = simulate(trace, NeuroscaleScaler(config), settings, fleet)
        misses[estimate, calibrate] = run.metrics.slo_miss_fraction
    assert misses[125.0, False] > 0.05
    assert misses[125.0, True] < misses[125.0, False] / 2
    assert misses[125.0, True] < misses[100.0, False] + 0.02, "close to a policy told the true capacity"
