"""Unit tests of trace readers, baselines, the SLO oracle, the queue model, the simulator and `simulate`.

Covers: synthetic families (reproducible, shaped); Azure per-request (prompt tokens, the end-of-trace fix), Mooncake
JSON lines and 10-minute aggregate readers (spreading at decode speed, warm-up cut, interpolation, auto-detection,
bad files named with line numbers) and the shared traces' known facts; the queueing delay of a FCFS fluid queue;
the SLO oracle (no wait over the SLO, starts a cold start early, keeps short gaps, agrees with an independent
computation: a quadratic program for its service curve and a brute-force cheapest cover of its per-step need);
the simulator's accounting (paid vs ready replicas, cold start, queue, saturating rate metric, demand gauges);
KEDA + HPA (tolerance, +100 %/+4, 300 s stabilization, waiting-requests metric) and Knative KPA (panic on
concurrency including queued requests); `simulate` writing simulation.json with its series and simulation.png,
and failing with exit code 2 on bad input (the hostile inputs are in tests/unit/test_cli_inputs.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import itertools

from neuroscale.autoscale.baselines import (HpaScaler, KpaScaler, StaticScaler, oracle_plan, slo_needed_replicas,
                                            slo_service_curve)
from neuroscale import cli as neuroscale_cli
from neuroscale.autoscale.policy import Observation
from neuroscale.autoscale.simulator import SimulationSettings, compare, queue_waits, run_oracle, simulate
from neuroscale.autoscale.traces import DemandTrace, TraceError, load_trace, synthetic_trace
from neuroscale.autoscale.policy import default_config

# The shared traces live beside the repository (shared/traces), as on developer machines and in CI.
SHARED = Path(__file__).resolve().parents[3] / "shared" / "traces"


def write_azure(path: Path, requests: list[tuple[float, int]], context: int = 100) -> Path:
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for offset, generated in requests:
        seconds = 10 + offset
        lines.append(f"2023-11-16 18:{int(seconds // 60):02d}:{seconds % 60:010.7f},{context},{generated}")
    path.write_text("\n".join(lines))
    return path


def write_aggregate(path: Path, rates: list[float], window: int = 600) -> Path:
    lines = ["window_start_s,window_s,req_per_s,req_per_s_with_length_data,exp_input_tok_per_s,"
             "exp_gen_tok_per_s,active_clients"]
    lines += [f"{i * window},{window},{r / 100:.4f},{r / 100:.4f},1.0,{r},3" for i, r in enumerate(rates)]
    path.write_text("\n".join(lines) + "\n")
    return path


def make_trace(values: list[float] | np.ndarray, tokens_per_request: float = 200.0) -> DemandTrace:
    return DemandTrace("synthetic", "test", 1.0, np.asarray(values, dtype=float), tokens_per_request, None)


def test_azure_reader_spreads_tokens_at_decode_speed(tmp_path):
    path = write_azure(tmp_path / "a.csv", [(0.0, 50), (10.0, 50), (100.0, 0), (200.0, 10)])
    trace = load_trace(path, decode_tokens_per_s=25.0)
    assert trace.format == "azure" and trace.requests == 4
    assert trace.tokens_per_request == pytest.approx(27.5)
    # The longest request ran for 2 s, and the warm-up cut removes exactly those seconds.
    assert len(trace.tokens_per_s) == 200 - 2
    assert trace.tokens_per_s[:8].sum() == 0.0
    assert list(trace.tokens_per_s[8:10]) == pytest.approx([25.0, 25.0])
    assert trace.tokens_per_s[10:].sum() == 0.0
    assert trace.scaled(3.0).tokens_per_s[8] == pytest.approx(75.0)
    assert trace.prompt_tokens_per_s[8] == 100.0 and trace.requests_per_s[8] == 1.0, "prompts arrive at once"
    assert trace.prompt_tokens_per_s.sum() == 300.0 and trace.requests_per_s.sum() == 3.0, "all but the warm-up"


def test_a_request_running_past_the_last_arrival_keeps_its_rate(tmp_path):
    # The last request arrives at 200 s and streams 1,000 tokens for 40 s: its last second asks for 25 tok/s,
    # not all 1,000 tokens squeezed into the series' last second.
    trace = load_trace(write_azure(tmp_path / "a.csv", [(0.0, 25), (100.0, 25), (199.5, 1_000), (200.0, 10)]),
                       decode_tokens_per_s=25.0)
    assert trace.tokens_per_s.max() <= 50.0 + 1e-9
    assert trace.tokens_per_s[-1] == pytest.approx(12.5)


def test_mooncake_json_lines_are_read_with_their_prompts(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("\n".join(json.dumps({"timestamp": ms, "input_length": 1_000, "output_length": 50,
                                          "hash_ids": [1, 2]}) for ms in (0, 5_000, 60_000, 120_000)))
    trace = load_trace(path, decode_tokens_per_s=25.0)
    assert trace.format == "mooncake" and trace.requests == 4
    assert trace.prompt_tokens_per_s.sum() == pytest.approx(4_000.0, rel=0.3)
    assert trace.peak(60, prefill_cost=0.5) > trace.peak(60)
    path.write_text('{"timestamp": 0, "input_length": 1, "output_length": 1}\n{"timestamp": "x"}\n')
    with pytest.raises(TraceError, match=":2: expected an object"):
        load_trace(path)


def test_azure_reader_keeps_every_token_after_the_warm_up(tmp_path):
    path = write_azure(tmp_path / "a.csv", [(0.0, 10), (50.0, 100), (60.5, 40), (200.0, 5)])
    trace = load_trace(path, decode_tokens_per_s=20.0)
    assert trace.tokens_per_s.sum() == pytest.approx(140.0, rel=1e-6)
    assert trace.tokens_per_s.max() == pytest.approx(20.0)


def test_aggregate_reader_interpolates_between_window_midpoints(tmp_path):
    trace = load_trace(write_aggregate(tmp_path / "g.csv", [100.0, 300.0, 300.0]))
    assert trace.format == "aggregate" and len(trace.tokens_per_s) == 1800
    assert trace.tokens_per_s[0] == pytest.approx(100.0)
    assert trace.tokens_per_s[600] == pytest.approx(200.0, abs=1.0)
    assert trace.tokens_per_s[-1] == pytest.approx(300.0)
    assert trace.tokens_per_request == pytest.approx(100.0)


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("a,b,c\n1,2,3\n", "matches no known trace format"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\nyesterday,1,2\n", ":2: expected TIMESTAMP"),
    ("TIMESTAMP,ContextTokens,GeneratedTokens\n", "no requests"),
    ("window_start_s,window_s,req_per_s,exp_gen_tok_per_s\n0,0,1,1\n", "window_s must be > 0"),
])
def test_bad_trace_files_get_clear_messages(tmp_path, content, message):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(TraceError, match=message):
        load_trace(path)


def test_explicit_format_must_match_the_header(tmp_path):
    path = write_aggregate(tmp_path / "g.csv", [1.0])
    with pytest.raises(TraceError, match="is not a azure trace"):
        load_trace(path, "azure")
    with pytest.raises(TraceError, match="unknown trace format"):
        load_trace(path, "parquet")


@pytest.mark.skipif(not SHARED.exists(), reason="shared traces not present")
def test_shared_traces_load_with_their_documented_shape():
    azure = load_trace(SHARED / "AzureLLMInferenceTrace_conv.csv")
    assert azure.requests == 19_366
    assert 3_400 < azure.duration_s < 3_502
    assert 1_100 < float(np.median(azure.tokens_per_s)) < 1_250
    assert 6_000 < azure.prompt_tokens_per_s.mean() < 7_000, "ContextTokens count"
    # The last second is no artefact: no higher than the trace's busiest minutes.
    assert azure.tokens_per_s[-1] < azure.peak(60)
    aggregate = load_trace(SHARED / "servegen_mm-image_aggregate_10min.csv")
    assert aggregate.duration_s == 24 * 3600
    mooncake = load_trace(SHARED / "mooncake_synthetic_trace.jsonl")
    assert mooncake.requests == 3_993 and mooncake.prompt_tokens_per_s.mean() > 50 * mooncake.tokens_per_s.mean()


def test_queue_waits_of_a_fluid_fcfs_queue():
    work = np.array([300.0, 0.0, 0.0, 0.0, 100.0])
    waits = queue_waits(work, np.full(5, 100.0), 1.0)
    # 300 arrive in second 0 at 100/s: the last of them is served at 3 s, two seconds after its second ends.
    assert waits.tolist() == pytest.approx([2.0, 1.0, 0.0, 0.0, 0.0])
    never = queue_waits(np.array([100.0, 100.0]), np.zeros(2), 1.0)
    assert np.isinf(never).all()


def test_oracle_waits_at_most_the_slo_and_starts_a_cold_start_early():
    demand = np.array([100.0] * 100 + [350.0] * 50 + [100.0] * 100)
    plan = oracle_plan(demand, 100.0, cold_start_s=30.0, slo_s=0.0)
    assert np.all(plan.ready * 100.0 >= demand)
    assert plan.paid[69] == 1 and plan.paid[70] == 4, "paid from one cold start before the burst"
    assert plan.ready[99] == 1 and plan.ready[100] == 4
    assert plan.paid.sum() == 250 + 3 * (50 + 30)
    relaxed = oracle_plan(demand, 100.0, cold_start_s=30.0, slo_s=10.0)
    assert queue_waits(demand, relaxed.ready * 100.0, 1.0).max() <= 10.0 + 1e-9
    assert relaxed.paid.sum() < plan.paid.sum(), "waiting up to the SLO is cheaper than serving every second"


def test_oracle_keeps_replicas_through_gaps_shorter_than_a_cold_start():
    demand = np.array([100.0] * 10 + [200.0] * 10 + [100.0] * 5 + [200.0] * 10 + [100.0] * 10)
    kept = oracle_plan(demand, 100.0, cold_start_s=20.0)
    restarted = oracle_plan(demand, 100.0, cold_start_s=2.0)
    assert kept.ready[22] == 2 and restarted.ready[22] == 1
    assert kept.paid.sum() <= 45 + 10 + 5 + 10 + 20


def _curve_by_quadratic_program(work: np.ndarray, slo: float) -> np.ndarray:
    """The taut string, independently: minimise the sum of squared service rates between the two curves."""
    from scipy.optimize import LinearConstraint, minimize

    upper = np.concatenate(([0.0], np.cumsum(work)))
    times = np.arange(len(upper), dtype=float)
    lower = np.interp(times - slo, times, upper, left=0.0)
    lower[-1] = upper[-1]
    n = len(work)
    cumulative = np.tril(np.ones((n, n)))
    result = minimize(lambda x: float(x @ x), np.asarray(work, float), jac=lambda x: 2 * x, method="trust-constr",
                      constraints=[LinearConstraint(cumulative, lower[1:], upper[1:])],
                      bounds=[(0, None)] * n, options={"gtol": 1e-10, "xtol": 1e-12, "maxiter": 5_000})
    return np.concatenate(([0.0], np.cumsum(result.x)))


def _cheapest_cover(needed: np.ndarray, lead: int) -> int:
    """Brute force: the cheapest paid replica-steps over every schedule that is ready at least ``needed``."""
    top = int(needed.max())
    best = None
    for ready in itertools.product(range(top + 1), repeat=len(needed)):
        if any(r < n for r, n in zip(ready, needed)):
            continue
        cost = sum(ready) + lead * sum(max(0, b - a) for a, b in zip(ready, ready[1:]))
        best = cost if best is None else min(best, cost)
    return int(best)


@pytest.mark.parametrize("seed", range(4))
def test_oracle_agrees_with_an_independent_computation(seed):
    rng = np.random.default_rng(seed)
    work = rng.choice([20.0, 60.0, 150.0, 260.0], size=24) * rng.random(24)
    curve = slo_service_curve(work, slo_s=3.0)
    assert np.allclose(curve, _curve_by_quadratic_program(work, 3.0), atol=0.5)
    needed = slo_needed_replicas(work, 100.0, slo_s=3.0)
    assert queue_waits(work, needed * 100.0, 1.0).max() <= 3.0 + 1e-9
    short = needed[:8]
    plan = oracle_plan(np.concatenate((short * 100.0,)), 100.0, cold_start_s=2.0, min_replicas=0)
    assert np.array_equal(plan.ready >= short, np.ones(8, bool))
    # Paid replica-steps: ready time plus one cold start for every start after time 0.
    assert plan.paid.sum() == _cheapest_cover(short, lead=2)


def _cheapest_schedule(work: np.ndarray, capacity: float, lead: int, slo: int, top: int) -> int:
    """Exhaustive search: the least paid replica-steps over every schedule of 0..top ready replicas per step in
    which, by the end of each step t, the queue holds no more than the work of the last ``slo`` steps (after the
    trace, as the scorer does, the last step's replicas keep serving)."""
    schedules = np.array(list(itertools.product(range(top + 1), repeat=len(work))))
    backlog = np.zeros(len(schedules))
    feasible = np.ones(len(schedules), dtype=bool)
    extended = np.concatenate((work, np.zeros(slo)))
    arrived = np.concatenate(([0.0], np.cumsum(extended)))
    for t in range(len(extended)):
        ready = schedules[:, min(t, len(work) - 1)]
        backlog = np.maximum(0.0, backlog + extended[t] - capacity * ready)
        if t >= slo:
            feasible &= backlog <= arrived[t + 1] - arrived[t + 1 - slo] + 1e-9
    # A replica started at step t is paid from one cold start earlier, or from time 0.
    starts = np.maximum(0, np.diff(schedules, axis=1)) * np.minimum(lead, np.arange(1, len(work)))
    return int((schedules.sum(axis=1) + starts.sum(axis=1))[feasible].min())


@pytest.mark.parametrize("seed", range(8))
def test_slo_oracle_matches_an_exhaustive_search(seed):
    rng = np.random.default_rng(seed)
    work = rng.choice([20.0, 60.0, 150.0, 260.0], size=8) * rng.random(8)
    base = oracle_plan(work, 100.0, cold_start_s=3.0, slo_s=2.0, min_replicas=0)
    assert base.paid.sum() == _cheapest_schedule(work, 100.0, lead=3, slo=2, top=3)
    # With a one-step cold start the local search need not reach the optimum; it is never cheaper than it.
    quick = oracle_plan(work, 100.0, cold_start_s=1.0, slo_s=2.0, min_replicas=0).paid.sum()
    best = _cheapest_schedule(work, 100.0, lead=1, slo=2, top=3)
    assert best <= quick <= best + 2


def test_oracle_is_never_dearer_than_static_peak():
    rng = np.random.default_rng(7)
    demand = np.abs(np.cumsum(rng.normal(0, 30, 3_000))) + 500
    trace = make_trace(demand)
    settings = SimulationSettings(100.0, cold_start_s=300.0)
    oracle = run_oracle(trace, settings)
    static = simulate(trace, StaticScaler(int(np.ceil(demand.max() / 100))), settings,
                      int(np.ceil(demand.max() / 100)))
    assert oracle.metrics.slo_miss_fraction == 0.0 and oracle.metrics.max_wait_s <= settings.slo_s + 1e-9
    assert static.metrics.shortfall_fraction == 0.0
    assert oracle.metrics.replica_hours <= static.metrics.replica_hours


class StepScaler:
    """Asks for ``after`` replicas from ``at`` seconds on, records what it observed."""

    name = "step"

    def __init__(self, before: int, after: int, at: float):
        self.before, self.after, self.at = before, after, at
        self.seen: list[Observation] = []

    def decide(self, now, observations, current_replicas):
        self.seen.append(observations[-1])
        return self.after if now >= self.at else self.before


def test_simulator_models_cold_start_queue_and_saturating_metric():
    demand = [150.0] * 600
    scaler = StepScaler(1, 2, at=60.0)
    run = simulate(make_trace(demand), scaler, SimulationSettings(100.0, cold_start_s=120.0), 1)
    assert run.paid[59] == 1 and run.paid[60] == 2
    assert run.ready[179] == 1 and run.ready[180] == 2, "ready one cold start after it was asked for"
    # 50 tok/s queue for 180 s: the work of second 179 is behind 9,000 queued tokens, served at 200 tok/s.
    assert run.wait_s[179] == pytest.approx(45.0)
    assert run.wait_s[-1] == 0.0, "the backlog drains once capacity exceeds demand"
    saturated = [o.tokens_per_second for o in scaler.seen if 120 <= o.at <= 180]
    assert all(t == pytest.approx(100.0) for t in saturated), "engines report served, not asked-for, tokens"
    assert max(o.queue_depth for o in scaler.seen) > 0, "waiting requests show the demand the rate cannot"
    assert max(o.running for o in scaler.seen if o.at < 180) == pytest.approx(8.0), "one replica: max_num_seqs"
    assert max(o.kv_cache_usage for o in scaler.seen) == pytest.approx(1.0)
    m = run.metrics
    assert m.shortfall_fraction == pytest.approx(180 * 50 / (600 * 150))
    assert m.wait_p99_s > 45 and m.slo_miss_fraction > 0.4
    assert m.replica_hours == pytest.approx((60 + 2 * 540) / 3600)
    assert m.actions == 1


def test_hpa_tolerance_up_limit_and_scale_down_stabilization():
    hpa = HpaScaler(target_tokens_per_replica=100.0, min_replicas=1, max_replicas=100)
    queued = HpaScaler(target_tokens_per_replica=100.0, min_replicas=1, max_replicas=100)
    assert queued.decide(0.0, [Observation(0.0, 1_000.0, 60.0, 10)], 10) == 12, "KEDA: 5 waiting per replica"
    obs = lambda at, tokens: [Observation(at, tokens, 0.0, 10)]  # noqa: E731
    assert hpa.decide(0.0, obs(0.0, 1_050.0), 10) == 10, "within the 10 % tolerance"
    assert hpa.decide(15.0, obs(15.0, 5_000.0), 10) == 20, "at most +100 % per period"
    assert hpa.decide(30.0, obs(30.0, 5_000.0), 2) == 6, "or +4 pods when that is more"
    assert hpa.decide(45.0, obs(45.0, 500.0), 20) == 20, "the 300 s window still holds the high recommendation"
    assert hpa.decide(400.0, obs(400.0, 500.0), 20) == 5
    assert hpa.decide(415.0, [], 5) == 5, "no metric, no change"


def test_kpa_panics_on_concurrency_including_queued_requests():
    kpa = KpaScaler(target_concurrency_per_replica=8.0, min_replicas=1, max_replicas=100)
    calm = [Observation(float(t), 0.0, 0.0, 2, running=12.0) for t in range(0, 60, 2)]
    assert kpa.decide(58.0, calm, 2) == 2
    burst = calm + [Observation(float(t), 0.0, 64.0, 2, running=16.0) for t in range(60, 66, 2)]
    assert kpa.decide(64.0, burst, 2) == 10, "80 in flight over the 6 s panic window need 10 at 8 each"
    later = burst + [Observation(float(t), 0.0, 0.0, 10, running=8.0) for t in range(66, 80, 2)]
    assert kpa.decide(78.0, later, 10) == 10, "no scale-down while panicking"
    assert kpa.decide(80.0, [Observation(80.0, 100.0, None, 10)], 10) == 10, "no concurrency, no change"


def test_compare_runs_every_scaler_on_the_same_trace():
    demand = np.concatenate([np.full(1_800, 2_000.0), np.linspace(2_000, 6_000, 1_800), np.full(1_800, 6_000.0)])
    trace = make_trace(demand)
    config = default_config(400.0, 120.0, max_replicas=40, tokens_per_request=200.0)
    runs = {r.name: r.metrics for r in compare(trace, SimulationSettings(400.0, 120.0, price_per_hour=2.0),
                                               config)}
    assert list(runs) == ["neuroscale", "keda-hpa", "knative-kpa", "static-peak", "oracle", "reactive-floor"]
    assert runs["reactive-floor"].slo_miss_fraction <= runs["neuroscale"].slo_miss_fraction
    assert runs["oracle"].replica_hours < runs["static-peak"].replica_hours
    assert runs["neuroscale"].slo_miss_fraction < 0.01
    assert runs["neuroscale"].cost == pytest.approx(2.0 * runs["neuroscale"].replica_hours)


def cli(argv: list[str]) -> int:
    return neuroscale_cli.main(argv)


def test_simulate_command_writes_json_and_png(tmp_path, capsys):
    trace = write_aggregate(tmp_path / "g.csv", [500.0, 900.0, 1_400.0, 800.0, 600.0, 1_000.0])
    out = tmp_path / "out"
    code = cli(["simulate", "--trace", str(trace), "--capacity", "100", "--cold-start", "120", "--scale", "2",
                "--price-per-hour", "1.5", "--slo", "20", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "neuroscale" in printed and "oracle" in printed and "demand ×2" in printed
    document = json.loads((out / "simulation.json").read_text())
    names = {"neuroscale", "keda-hpa", "knative-kpa", "static-peak", "oracle", "reactive-floor"}
    assert set(document["results"]) == names
    assert document["trace"]["scale"] == 2.0 and document["settings"]["slo_s"] == 20.0
    assert document["results"]["oracle"]["slo_miss_pct"] == 0.0
    hpa = document["results"]["keda-hpa"]
    assert hpa["cost_usd"] == pytest.approx(1.5 * hpa["replica_hours"], rel=1e-3)
    assert "oracle" in document["definitions"] and "reactive-floor" in document["definitions"]
    # The series lets anyone recompute a figure: here every scaler's SLO misses (neuroscale's are not zero).
    series = document["series"]
    assert set(series["ready_replicas"]) == names and len(series["time_s"]) == 3_600
    work = np.asarray(series["generated_tokens_per_s"])  # --capacity without --prefill-speed: prompts are free
    requests = np.asarray(series["requests_per_s"])
    assert document["results"]["neuroscale"]["slo_miss_pct"] > 0
    for name in names:
        waits = queue_waits(work, np.asarray(series["ready_replicas"][name]) * 100.0, 1.0)
        recomputed = 100 * requests[waits > 20.0].sum() / requests.sum()
        assert recomputed == pytest.approx(document["results"][name]["slo_miss_pct"], abs=1e-3)
    assert (out / "simulation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_command_fails_cleanly(tmp_path, capsys):
    assert cli(["simulate", "--trace", str(tmp_path / "missing.csv"), "--capacity", "100"]) == 2
    assert "cannot read trace" in capsys.readouterr().err
    trace = write_aggregate(tmp_path / "g.csv", [500.0])
    assert cli(["simulate", "--trace", str(trace), "--out", str(tmp_path)]) == 2
    assert "--capacity" in capsys.readouterr().err


def test_synthetic_traces_are_reproducible_and_follow_their_shape():
    first, again = synthetic_trace("step5", seed=3), synthetic_trace("step5", seed=3)
    assert np.array_equal(first.tokens_per_s, again.tokens_per_s)
    arrivals = first.requests_per_s
    start = int(0.4 * 3600) - (3600 - len(arrivals))  # the warm-up cut shifts the series
    # The step asks for 5x the request rate of the first stretch (Poisson noise aside).
    assert 4.5 < arrivals[start + 60: start + 1_200].mean() / arrivals[: start - 60].mean() < 5.5
    assert first.format == "synthetic" and first.requests > 5_000 and first.prompt_tokens_per_s.sum() > 0
    bursty = synthetic_trace("mmpp", seed=1).requests_per_s
    minutes = bursty[: len(bursty) // 60 * 60].reshape(-1, 60).mean(axis=1)
    assert minutes.max() > 2.5 * np.median(minutes), "on/off bursts"
    with pytest.raises(TraceError, match="unknown synthetic shape"):
        synthetic_trace("sawtooth", seed=1)
