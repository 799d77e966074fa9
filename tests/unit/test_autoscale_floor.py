"""The reactive floor: exact demand, instant orders, a cold start and no foresight; and the standing headroom."""

from __future__ import annotations

import numpy as np
import pytest

from neuroscale.autoscale.floor import demand_level, reactive_floor, standing_headroom
from neuroscale.autoscale.queueing import queue_waits


def test_demand_level_is_the_trailing_mean_over_the_slo():
    work = np.array([10.0, 20.0, 30.0, 40.0])
    assert demand_level(work, 2.0).tolist() == [10.0, 15.0, 25.0, 35.0]
    assert demand_level(work, 0.0).tolist() == work.tolist()


def test_floor_orders_the_demand_it_sees_and_gets_it_one_cold_start_later():
    work = np.concatenate([np.full(100, 100.0), np.full(200, 400.0)])
    run = reactive_floor(work, np.ones(300), 100.0, cold_start_s=30.0, slo_s=10.0, opening_s=100.0)
    ready = run.plan.ready
    assert ready[:130].tolist() == [1] * 130  # the opening fleet until the first order after the step arrives
    assert ready[130] == 2  # ordered at t = 100: the 10 s level has seen one second of the step, nothing queued yet
    assert ready[130:].max() > 4  # the backlog of the cold start is drained with extra replicas ...
    assert ready[-60:].tolist() == [4] * 60  # ... released at once when it is gone
    assert run.wait_s[-1] == 0
    # Paid from each order, one cold start before its replicas are ready.
    assert run.plan.paid[100:].max() == ready.max()
    assert run.replica_hours == pytest.approx(run.plan.paid.sum() / 3600)
    assert run.miss_fraction == pytest.approx(float(np.mean(queue_waits(work, ready * 100.0, 1.0) > 10.0 + 1e-9)))
    assert 20 / 300 < run.miss_fraction < 0.5


def test_floor_is_exact_on_flat_demand_and_releases_at_once():
    work = np.concatenate([np.full(60, 300.0), np.full(60, 100.0)])
    run = reactive_floor(work, np.ones(120), 100.0, cold_start_s=10.0, slo_s=1.0, opening_s=60.0)
    assert run.miss_fraction == 0
    assert run.plan.ready[70:].tolist() == [1] * 50


def test_standing_headroom_is_the_smallest_factor_within_the_budget():
    rng = np.random.default_rng(3)
    work = np.repeat(rng.choice([100.0, 250.0], size=40), 30)  # bursts shorter than the cold start
    requests = np.ones(len(work))
    found = standing_headroom(work, requests, 100.0, 60.0, 10.0, miss_budget=0.01)
    assert found is not None and found.headroom > 1
    assert found.miss_fraction <= 0.01
    below = reactive_floor(work, requests, 100.0, 60.0, 10.0, headroom=found.headroom - 0.02)
    assert below.miss_fraction > 0.01
    # More headroom never adds a miss.
    misses = [reactive_floor(work, requests, 100.0, 60.0, 10.0, headroom=h).miss_fraction for h in (1, 1.5, 2, 3)]
    assert misses == sorted(misses, reverse=True)


def test_standing_headroom_is_one_when_the_floor_already_meets_the_budget_and_none_when_nothing_does():
    flat = np.full(600, 250.0)
    assert standing_headroom(flat, np.ones(600), 100.0, 60.0, 10.0).headroom == 1.0
    spike = np.concatenate([np.full(300, 1.0), np.full(300, 10_000.0)])
    assert standing_headroom(spike, np.ones(600), 100.0, 60.0, 10.0, most=4.0) is None
