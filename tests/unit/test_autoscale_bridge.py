"""Unit tests of the overflow-bridge what-if (`neuroscale.autoscale.bridge.overflow_bridge`).

Covers: nothing is bridged while the fleet keeps up; a burst beyond what the ready replicas serve within the SLO is
bridged exactly by its excess, the admitted queue never waits longer than the SLO, and the bridged share of each
step's tokens is billed at the prompt and generated prices; a fleet with no ready replica bridges everything.
"""

from __future__ import annotations

import numpy as np
import pytest

from neuroscale.autoscale.bridge import overflow_bridge

CAPACITY = 100.0
SLO = 10.0


def run(work: list[float], ready: list[int], generated: list[float] | None = None,
        prompt: list[float] | None = None):
    w = np.asarray(work, dtype=float)
    return overflow_bridge(w, np.asarray(generated if generated is not None else work, dtype=float),
                           np.asarray(prompt if prompt is not None else [0.0] * len(work), dtype=float),
                           np.asarray(ready), CAPACITY, SLO, 1.0, prompt_price_per_million=1.0,
                           generated_price_per_million=3.0)


def test_nothing_is_bridged_while_the_fleet_keeps_up():
    outcome = run([150.0] * 60, [2] * 60)
    assert outcome.bridged_work_fraction == 0.0 and outcome.bridge_cost == 0.0
    assert outcome.max_admitted_wait_s == 0.0


def test_a_burst_beyond_the_slo_is_bridged_by_its_excess():
    # One replica: 100 work/s served, a queue of 10 s × 100 = 1,000 allowed. A 5,000 burst in one second: 100 is
    # served, 1,000 may wait, 3,900 go to the bridge.
    work = [5_000.0] + [0.0] * 30
    outcome = run(work, [1] * 31, generated=[1_000.0] + [0.0] * 30, prompt=[4_000.0] + [0.0] * 30)
    assert outcome.bridged_work_fraction == pytest.approx(3_900 / 5_000)
    share = 3_900 / 5_000
    assert outcome.bridged_generated_tokens == pytest.approx(share * 1_000)
    assert outcome.bridged_prompt_tokens == pytest.approx(share * 4_000)
    assert outcome.bridge_cost == pytest.approx((share * 4_000 * 1.0 + share * 1_000 * 3.0) / 1e6)
    assert outcome.max_admitted_wait_s == pytest.approx(SLO)


def test_sustained_overload_keeps_the_admitted_wait_within_the_slo():
    rng = np.random.default_rng(3)
    work = list(rng.uniform(0, 600, 600))
    outcome = run(work, [3] * 600)
    assert 0 < outcome.bridged_work_fraction < 1
    assert outcome.max_admitted_wait_s <= SLO + 1e-9


def test_no_ready_replica_bridges_everything():
    outcome = run([50.0] * 10, [0] * 10)
    assert outcome.bridged_work_fraction == pytest.approx(1.0)
    assert outcome.max_admitted_wait_s == 0.0
