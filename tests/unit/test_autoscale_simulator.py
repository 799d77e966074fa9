"""Unit tests of trace readers, baselines, the oracle, the simulator and the `simulate` command.

Covers: synthetic Poisson traces (reproducible, shaped); Azure per-request and 10-minute aggregate readers (spreading at decode speed, warm-up cut, interpolation,
auto-detection, bad files named with line numbers) and the shared traces' known facts; the oracle (never
under-provisioned, starts a cold start early, never dearer than static peak, keeps short gaps); the simulator's
accounting (paid vs ready replicas, cold start, queue that drains later, rate metric that saturates at capacity);
HPA-style (tolerance, +100 %/+4 limit, 300 s scale-down stabilization) and KPA-style (panic mode) behaviour;
`simulate` writing simulation.json and simulation.png and failing with exit code 2 on bad input (the hostile inputs
are in tests/unit/test_cli_inputs.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from neuroscale.autoscale.baselines import HpaScaler, KpaScaler, StaticScaler, oracle_plan
from neuroscale import cli as neuroscale_cli
from neuroscale.autoscale.policy import Observation
from neuroscale.autoscale.simulator import SimulationSettings, compare, run_oracle, simulate
from neuroscale.autoscale.traces import DemandTrace, TraceError, load_trace, synthetic_trace
from neuroscale.autoscale.policy import default_config

# The shared traces live beside the repository (shared/traces), as on developer machines and in CI.
SHARED = Path(__file__).resolve().parents[3] / "shared" / "traces"


def write_azure(path: Path, requests: list[tuple[float, int]]) -> Path:
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for offset, generated in requests:
        seconds = 10 + offset
        lines.append(f"2023-11-16 18:{int(seconds // 60):02d}:{seconds % 60:010.7f},100,{generated}")
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
    assert trace.tokens_per_s[10:].sum() == 0.0, "tokens past the last arrival are cut off"
    assert trace.scaled(3.0).tokens_per_s[8] == pytest.approx(75.0)


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
    aggregate = load_trace(SHARED / "servegen_mm-image_aggregate_10min.csv")
    assert aggregate.duration_s == 24 * 3600


def test_oracle_serves_everything_and_starts_a_cold_start_early():
    demand = np.array([100.0] * 100 + [350.0] * 50 + [100.0] * 100)
    plan = oracle_plan(demand, 100.0, cold_start_s=30.0)
    assert np.all(plan.ready * 100.0 >= demand)
    assert plan.paid[69] == 1 and plan.paid[70] == 4, "paid from one cold start before the burst"
    assert plan.ready[99] == 1 and plan.ready[100] == 4
    assert plan.paid.sum() == 250 + 3 * (50 + 30)


def test_oracle_keeps_replicas_through_gaps_shorter_than_a_cold_start():
    demand = np.array([100.0] * 10 + [200.0] * 10 + [100.0] * 5 + [200.0] * 10 + [100.0] * 10)
    kept = oracle_plan(demand, 100.0, cold_start_s=20.0)
    restarted = oracle_plan(demand, 100.0, cold_start_s=2.0)
    assert kept.ready[22] == 2 and restarted.ready[22] == 1
    assert kept.paid.sum() <= 45 + 10 + 5 + 10 + 20


def test_oracle_is_never_dearer_than_static_peak():
    rng = np.random.default_rng(7)
    demand = np.abs(np.cumsum(rng.normal(0, 30, 3_000))) + 500
    trace = make_trace(demand)
    settings = SimulationSettings(100.0, cold_start_s=300.0)
    oracle = run_oracle(trace, settings)
    static = simulate(trace, StaticScaler(int(np.ceil(demand.max() / 100))), settings,
                      int(np.ceil(demand.max() / 100)))
    assert oracle.metrics.underprovisioned_fraction == 0.0
    assert static.metrics.underprovisioned_fraction == 0.0
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
    assert run.queue_tokens[179] == pytest.approx(180 * 50.0)
    assert run.queue_tokens[-1] == 0.0, "the backlog drains once capacity exceeds demand"
    saturated = [o.tokens_per_second for o in scaler.seen if 120 <= o.at <= 180]
    assert all(t == pytest.approx(100.0) for t in saturated), "engines report served, not asked-for, tokens"
    assert max(o.queue_depth for o in scaler.seen) > 0
    m = run.metrics
    assert m.underprovisioned_minutes == pytest.approx(3.0)
    assert m.underprovisioned_fraction == pytest.approx(180 * 50 / (600 * 150))
    assert m.replica_hours == pytest.approx((60 + 2 * 540) / 3600)
    assert m.actions == 1


def test_hpa_tolerance_up_limit_and_scale_down_stabilization():
    hpa = HpaScaler(target_tokens_per_replica=100.0, min_replicas=1, max_replicas=100)
    obs = lambda at, tokens: [Observation(at, tokens, 0.0, 10)]  # noqa: E731
    assert hpa.decide(0.0, obs(0.0, 1_050.0), 10) == 10, "within the 10 % tolerance"
    assert hpa.decide(15.0, obs(15.0, 5_000.0), 10) == 20, "at most +100 % per period"
    assert hpa.decide(30.0, obs(30.0, 5_000.0), 2) == 6, "or +4 pods when that is more"
    assert hpa.decide(45.0, obs(45.0, 500.0), 20) == 20, "the 300 s window still holds the high recommendation"
    assert hpa.decide(400.0, obs(400.0, 500.0), 20) == 5
    assert hpa.decide(415.0, [], 5) == 5, "no metric, no change"


def test_kpa_panics_on_a_burst_and_does_not_scale_down_in_panic():
    kpa = KpaScaler(target_tokens_per_replica=100.0, min_replicas=1, max_replicas=100)
    calm = [Observation(float(t), 200.0, 0.0, 2) for t in range(0, 180, 15)]
    assert kpa.decide(165.0, calm, 2) == 2
    burst = calm + [Observation(float(t), 1_000.0, 0.0, 2) for t in range(180, 240, 15)]
    assert kpa.decide(225.0, burst, 2) == 10, "panic follows the 60 s window"
    later = burst + [Observation(float(t), 100.0, 0.0, 10) for t in range(240, 300, 15)]
    assert kpa.decide(285.0, later, 10) == 10, "no scale-down while panicking"


def test_compare_runs_every_scaler_on_the_same_trace():
    demand = np.concatenate([np.full(1_800, 2_000.0), np.linspace(2_000, 6_000, 1_800), np.full(1_800, 6_000.0)])
    trace = make_trace(demand)
    config = default_config(400.0, 120.0, max_replicas=40, tokens_per_request=200.0)
    runs = {r.name: r.metrics for r in compare(trace, SimulationSettings(400.0, 120.0, price_per_hour=2.0),
                                               config)}
    assert list(runs) == ["neuroscale", "hpa", "kpa", "static-peak", "oracle"]
    assert runs["oracle"].replica_hours < runs["static-peak"].replica_hours
    assert runs["neuroscale"].underprovisioned_fraction < 0.01
    assert runs["neuroscale"].cost == pytest.approx(2.0 * runs["neuroscale"].replica_hours)


def cli(argv: list[str]) -> int:
    return neuroscale_cli.main(argv)


def test_simulate_command_writes_json_and_png(tmp_path, capsys):
    trace = write_aggregate(tmp_path / "g.csv", [500.0, 900.0, 1_400.0, 800.0, 600.0, 1_000.0])
    out = tmp_path / "out"
    code = cli(["simulate", "--trace", str(trace), "--capacity", "100", "--cold-start", "120", "--scale", "2",
                "--price-per-hour", "1.5", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "neuroscale" in printed and "oracle" in printed and "demand ×2" in printed
    document = json.loads((out / "simulation.json").read_text())
    assert set(document["results"]) == {"neuroscale", "hpa", "kpa", "static-peak", "oracle"}
    assert document["trace"]["scale"] == 2.0
    assert document["results"]["oracle"]["underprovisioned_demand_pct"] == 0.0
    assert document["results"]["hpa"]["cost_usd"] == pytest.approx(1.5 * document["results"]["hpa"]["replica_hours"],
                                                                   rel=1e-3)
    assert "oracle" in document["definitions"]
    assert (out / "simulation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_simulate_command_fails_cleanly(tmp_path, capsys):
    assert cli(["simulate", "--trace", str(tmp_path / "missing.csv"), "--capacity", "100"]) == 2
    assert "cannot read trace" in capsys.readouterr().err
    trace = write_aggregate(tmp_path / "g.csv", [500.0])
    assert cli(["simulate", "--trace", str(trace), "--out", str(tmp_path)]) == 2
    assert "--capacity" in capsys.readouterr().err


def test_synthetic_traces_are_reproducible_and_follow_their_shape():
    first, again = synthetic_trace("step", seed=3), synthetic_trace("step", seed=3)
    assert np.array_equal(first.tokens_per_s, again.tokens_per_s)
    demand = first.tokens_per_s
    third = len(demand) // 3
    # The middle third asks for 1.8x the rate of the first quarter (Poisson noise aside).
    assert 1.6 < demand[third + 300: 2 * third - 300].mean() / demand[: third - 300].mean() < 2.0
    assert first.format == "synthetic" and first.requests > 10_000
    with pytest.raises(TraceError, match="unknown synthetic shape"):
        synthetic_trace("sawtooth", seed=1)
