"""Hostile input to the `neuroscale` command line (issue "Hardening", item 10).

Every input error, whichever subcommand meets it, ends the same way: exactly one line on stderr,
``neuroscale <command>: <what is wrong>``, no traceback, exit status 2, and bounded time and memory. The CLI runs
in process through `neuroscale.cli.main` (one case also as a subprocess, as users run it). Memory bounds are
asserted as refusals (an over-size file is refused before it is parsed), never by timing.

Covers: the shared mechanism (InputError caught in `main`, argparse errors on one line, the shared number
validators); `size --params-billions nan|inf|1e308` and other out-of-range numbers; `plan` on deeply nested YAML
(flow and block, and through aliases), alias bombs, recursive aliases, over-size files and stdin (refused before
parsing, budgets over a whole run), unreadable files, and invalid documents (exit 2, not 1); `simulate` on a CSV
mixing time zones, rows years apart and aggregate windows 1e13 s apart (refused before the series is built, the
week-long bound itself), inf/nan/overflowing token counts, over-long lines and over-size files (refused before
reading), `--capacity 0` and every other number flag, a scale needing more replicas than the simulator models.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from neuroscale import cli, yamlio
from neuroscale.api import cli as crds_cli
from neuroscale.autoscale import cli as autoscale_cli
from neuroscale.autoscale import traces
from neuroscale.autoscale.traces import load_trace
from neuroscale.render import cli as render_cli
from tests.support.factories import make_model_deployment

ROOT = Path(__file__).resolve().parents[2]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_input_error(result: tuple[int, str, str], command: str, *phrases: str) -> str:
    """Exit status 2, nothing on stdout, one stderr line `neuroscale <command>: ...` holding every phrase."""
    code, out, err = result
    assert "Traceback" not in err, err
    assert code == 2, err
    assert out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    (line,) = lines
    assert line.startswith(f"neuroscale {command}: "), line
    for phrase in phrases:
        assert phrase in line, line
    return line


# --- the shared mechanism ---------------------------------------------------------------------------------------


def test_an_input_error_raised_by_any_subcommand_is_one_line_and_exit_2(capsys, monkeypatch):
    def fails(args):
        raise cli.InputError("trace.csv:3: expected a number\n  (the value was 'x')")

    # `crds` never raises InputError itself; any subcommand that does is reported the same way.
    monkeypatch.setattr(crds_cli, "main", fails)
    line = assert_input_error(run(["crds"], capsys), "crds")
    assert line == "neuroscale crds: trace.csv:3: expected a number; (the value was 'x')"


def test_other_exceptions_are_bugs_and_keep_their_traceback(monkeypatch):
    monkeypatch.setattr(crds_cli, "main", lambda args: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        cli.main(["crds"])


def test_one_line_joins_lines_escapes_control_characters_and_bounds_length():
    assert cli.one_line("a\n  b\r\nc\x1b[31m") == "a; b; c\\x1b[31m"
    assert len(cli.one_line("x" * 10**6)) == cli.MAX_MESSAGE_CHARS


@pytest.mark.parametrize("argv", [["bogus"], [], ["size"], ["size", "m", "--dtype", "fp4"], ["plan", "-f"],
                                  ["simulate", "--trace", "t.csv", "--no-such-flag"]])
def test_argparse_errors_are_one_line_and_exit_2(argv, capsys):
    command = argv[0] if argv and argv[0] != "bogus" else ""
    code, out, err = run(argv, capsys)
    assert (code, out) == (2, "")
    (line,) = err.splitlines()
    assert line.startswith(f"neuroscale {command}:".replace(" :", ":"))
    assert "--help" in line and "usage:" not in line


def test_help_and_version_still_exit_0(capsys):
    assert cli.main(["--version"]) == 0
    assert "neuroscale" in capsys.readouterr().out
    assert cli.main(["size", "--help"]) == 0
    assert "--params-billions" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["nan", "NaN", "inf", "-inf", "1e308", "1e999", "-1", "0", "abc", ""])
def test_shared_number_validators_refuse_non_finite_and_out_of_range(text):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        cli.float_in(0.0, 1e6, low_open=True)(text)
    with pytest.raises(argparse.ArgumentTypeError):
        cli.int_in(1, 100)(text)
    assert cli.float_in(0.0, 1e6, low_open=True)("2.5") == 2.5
    assert cli.int_in(1, 100)("100") == 100


# --- size ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["nan", "inf", "1e308", "-inf", "0", "-3", "1e6"])
def test_size_refuses_params_billions_that_are_not_finite_or_out_of_range(value, capsys):
    result = run(["size", "s3://acme/chat/", f"--params-billions={value}"], capsys)
    assert_input_error(result, "size", "argument --params-billions:", "expected a finite number > 0 and <= 100000",
                       repr(value))


@pytest.mark.parametrize("argv, flag", [
    (["--max-model-len", "0"], "--max-model-len"),
    (["--max-model-len", "9" * 5000], "--max-model-len"),
    (["--max-num-seqs", "1e3"], "--max-num-seqs"),
    (["--max-num-seqs", "100000000"], "--max-num-seqs"),
    (["--tp=-8"], "--tp"),
])
def test_size_refuses_other_numbers_out_of_range(argv, flag, capsys):
    assert_input_error(run(["size", "hf://meta-llama/Llama-3.1-8B", *argv], capsys), "size", f"argument {flag}:")


def test_size_the_largest_accepted_parameter_count_gets_a_sizing_answer_not_a_crash(capsys):
    assert_input_error(run(["size", "s3://acme/chat/", "--params-billions", "100000"], capsys), "size",
                       "nothing fits")


def test_size_as_users_run_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "neuroscale", "size", "s3://a/b", "--params-billions", "nan"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        "neuroscale size: argument --params-billions: expected a finite number > 0 and <= 100000, got 'nan' "
        "(see neuroscale size --help)"]


# --- plan ------------------------------------------------------------------------------------------------------


def plan(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
         stdin: str | io.StringIO = "") -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", stdin if isinstance(stdin, io.StringIO) else io.StringIO(stdin))
    return run(["plan", *argv], capsys)


def nested(depth: int) -> Any:
    """A value `depth` YAML nodes deep (the scalar at the bottom counts)."""
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = [value]
    return value


def config_map(data: Any) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": data}


@pytest.mark.parametrize("text", ["[" * 100_000, "".join(f"{' ' * i}k:\n" for i in range(1_000)) + " " * 1_000 + "x",
                                  "- " * 50_000 + "x\n"], ids=["flow", "block-mapping", "block-sequence"])
def test_plan_deeply_nested_input_is_refused_without_recursion_error(text, capsys, monkeypatch, tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    assert_input_error(plan(["-f", str(path)], capsys, monkeypatch), "plan",
                       f"{path}: line ", f"nested more than {render_cli.MAX_DEPTH} levels deep")


def test_plan_nesting_up_to_the_bound_is_read(capsys, monkeypatch):
    # The document is level 1; the value of `data` starts at level 2, so this reaches level MAX_DEPTH exactly.
    doc = config_map(nested(render_cli.MAX_DEPTH - 1))
    code, out, err = plan(["-f", "-"], capsys, monkeypatch, stdin=json.dumps(doc))
    assert (code, out) == (0, "") and "ConfigMap cm: not a neuroscale resource" in err
    doc = config_map(nested(render_cli.MAX_DEPTH))
    assert_input_error(plan(["-f", "-"], capsys, monkeypatch, stdin=json.dumps(doc)), "plan", "nested more than")


def test_plan_aliases_count_as_deep_as_what_they_stand_for(capsys, monkeypatch):
    # Each anchor holds the previous one a level deeper; written out, the last is 150 levels deep.
    lines = ["- &a0 " + "[" * 50 + "]" * 50] + [f"- &a{i} [[[[[[[[[[*a{i - 1}]]]]]]]]]]" for i in range(1, 11)]
    assert_input_error(plan(["-f", "-"], capsys, monkeypatch, stdin="\n".join(lines)), "plan",
                       "line 6, column", "nested more than 100 levels deep")


def test_plan_billion_laughs_is_refused_by_the_node_budget(capsys, monkeypatch):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]  # 9**10 nodes
    assert_input_error(plan(["-f", "-"], capsys, monkeypatch, stdin="\n".join(lines)), "plan",
                       f"more than {render_cli.MAX_NODES} YAML nodes in one run (aliases counted as expanded)")


def test_plan_a_recursive_alias_is_refused(capsys, monkeypatch):
    assert_input_error(plan(["-f", "-"], capsys, monkeypatch, stdin="a: &loop [1, *loop]\n"), "plan",
                       "<stdin>: line 1, column 14: alias *loop refers to a node that contains it")


def test_plan_aliases_within_the_bounds_still_work(capsys, monkeypatch):
    doc = "apiVersion: v1\nkind: ConfigMap\nmetadata: &m {name: cm}\ndata: {copy: *m, more: *m}\n"
    code, _, err = plan(["-f", "-"], capsys, monkeypatch, stdin=doc)
    assert code == 0 and "ConfigMap cm: not a neuroscale resource" in err


def test_plan_node_budget_covers_every_file_of_a_run(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(render_cli, "MAX_NODES", 1_000)
    (tmp_path / "a.yaml").write_text(json.dumps(config_map(list(range(600)))))
    (tmp_path / "b.yaml").write_text(json.dumps(config_map(list(range(600)))))
    code, _, err = plan(["-f", str(tmp_path / "a.yaml")], capsys, monkeypatch)
    assert code == 0, err
    assert_input_error(plan(["-f", str(tmp_path)], capsys, monkeypatch), "plan",
                       "b.yaml: line 1, column", "more than 1000 YAML nodes in one run")


def test_plan_an_over_size_file_is_refused_before_it_is_read(capsys, monkeypatch, tmp_path):
    big = tmp_path / "big.yaml"
    with big.open("wb") as handle:  # sparse: 17 MiB on paper, no disk and no memory
        handle.truncate(render_cli.MAX_INPUT_BYTES + 2**20)
    opened: list[Path] = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self) or real_open(self, *a, **k))
    assert_input_error(plan(["-f", str(big)], capsys, monkeypatch), "plan",
                       f"{big}: 17 MiB, more than the 16 MiB of manifests plan reads in one run")
    assert big not in opened


def test_plan_reads_at_most_the_budget_from_stdin_or_a_device(capsys, monkeypatch):
    class Endless(io.StringIO):
        sizes: list[int] = []

        def read(self, size: int | None = -1) -> str:
            assert size is not None and size >= 0, "an unbounded read"
            self.sizes.append(size)
            return "#" * size

    assert_input_error(plan(["-f", "-"], capsys, monkeypatch, stdin=Endless()), "plan",
                       "<stdin>: more than the 16 MiB of manifests plan reads in one run")
    assert Endless.sizes == [render_cli.MAX_INPUT_BYTES + 1]


def test_plan_byte_budget_covers_every_file_of_a_run(capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(render_cli, "MAX_INPUT_BYTES", 1_000)
    for name in ("a.yaml", "b.yaml"):
        (tmp_path / name).write_text("# comment\n" * 60)
    assert_input_error(plan(["-f", str(tmp_path)], capsys, monkeypatch), "plan",
                       "b.yaml: 0.000572 MiB with the input before it, more than the 0.000954 MiB")


@pytest.mark.parametrize("content, phrase", [
    (b"kind: [unclosed", "not valid YAML or JSON: line 1, column 16: expected ',' or ']'"),
    (b"a: \x01", "not valid YAML or JSON: character 4: unacceptable character #x0001"),
    (b"\xff\xfe", "cannot read: 'utf-8' codec can't decode byte 0xff"),
    (b"a: *nowhere", "not valid YAML or JSON: line 1, column 4: found undefined alias 'nowhere'"),
])
def test_plan_unreadable_files_are_one_line_with_exit_2(content, phrase, capsys, monkeypatch, tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    assert_input_error(plan(["-f", str(path)], capsys, monkeypatch), "plan", f"{path}: {phrase}")


def test_plan_a_bad_file_after_good_ones_prints_only_its_error(capsys, monkeypatch, tmp_path):
    (tmp_path / "a.yaml").write_text(yamlio.dump(make_model_deployment(name="good")))
    (tmp_path / "b.yaml").write_text("[" * 1000)
    assert_input_error(plan(["-f", str(tmp_path)], capsys, monkeypatch), "plan", "b.yaml: line 1, column 101")


def test_plan_an_invalid_document_exits_2_like_the_other_subcommands(capsys, monkeypatch):
    doc = yamlio.dump(make_model_deployment(name="bad", model={"source": "ftp://nope"}))
    code, out, err = plan(["-f", "-"], capsys, monkeypatch, stdin=doc)
    assert (code, out) == (2, "")
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("<stdin>: error: ")]
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_plan_deep_nesting_as_users_run_it(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 100_000)
    proc = subprocess.run([sys.executable, "-m", "neuroscale", "plan", "-f", str(path)], capture_output=True,
                          text=True, cwd=ROOT, timeout=120)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.splitlines() == [f"neuroscale plan: {path}: line 1, column 101: nested more than 100 levels "
                                        "deep; Kubernetes manifests never are"]


# --- simulate --------------------------------------------------------------------------------------------------

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
AGGREGATE_HEADER = "window_start_s,window_s,req_per_s,exp_gen_tok_per_s\n"


def simulate(trace: Path, capsys: pytest.CaptureFixture[str], *flags: str) -> tuple[int, str, str]:
    return run(["simulate", "--trace", str(trace), "--capacity", "100", "--no-plot", "--out",
                str(trace.parent / "out"), *flags], capsys)


def write(tmp_path: Path, text: str, name: str = "trace.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_simulate_a_csv_mixing_time_zones_names_the_line(tmp_path, capsys):
    trace = write(tmp_path, AZURE_HEADER + "2023-11-16 18:00:00.1234567,1,20\n2023-11-16 18:00:01.5+00:00,1,20\n")
    assert_input_error(simulate(trace, capsys), "simulate", f"{trace}:3: TIMESTAMP '2023-11-16 18:00:01.5+00:00' "
                       "has a time zone but line 2's has none; give every row a time zone or none")


def test_simulate_time_zones_on_every_row_are_read(tmp_path):
    trace = write(tmp_path, AZURE_HEADER + "".join(f"2023-11-16 18:{m:02d}:00.1234567+01:00,1,20\n" for m in range(9))
                  + "2023-11-16 17:09:00Z,1,20\n")
    loaded = load_trace(trace)
    assert loaded.requests == 10 and 500 < loaded.duration_s <= 600


def test_simulate_two_rows_years_apart_are_refused_before_the_series_is_built(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(traces, "_from_requests", lambda *a: pytest.fail("the per-second series was built"))
    trace = write(tmp_path, AZURE_HEADER + "2003-11-16 18:00:00,1,20\n2023-11-16 18:00:10,1,20\n")
    assert_input_error(simulate(trace, capsys), "simulate", f"{trace}: the requests from line 2 to line 3 span "
                       "7,305.0 days; simulate replays at most 7 days of trace: cut it into pieces")


@pytest.mark.parametrize("rows", [["1e13,600,1,1", "0,600,1,1"], ["0,600,1,1", "1e13,600,1,1"], ["0,1e13,1,1"],
                                  ["-1e308,600,1,1", "1e308,600,1,1"]])
def test_simulate_aggregate_windows_far_apart_are_refused(rows, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(traces.np, "arange", lambda *a: pytest.fail("the per-second series was built"))
    trace = write(tmp_path, AGGREGATE_HEADER + "\n".join(rows) + "\n")
    assert_input_error(simulate(trace, capsys), "simulate", f"{trace}: the windows from the start of line ",
                       "simulate replays at most 7 days of trace")


def test_simulate_an_aggregate_start_of_1e13_alone_is_only_an_offset(tmp_path):
    trace = write(tmp_path, AGGREGATE_HEADER + "".join(f"{1e13 + 600 * i:.0f},600,1,{100 + i}\n" for i in range(6)))
    assert len(load_trace(trace).tokens_per_s) == 3600


def test_simulate_a_week_of_trace_is_the_longest_read(tmp_path):
    week = int(traces.MAX_SPAN_S // 600)
    trace = write(tmp_path, AGGREGATE_HEADER + "".join(f"{600 * i},600,1,100\n" for i in range(week)))
    assert load_trace(trace).duration_s == traces.MAX_SPAN_S
    with pytest.raises(traces.TraceError, match="span 7.0 days; simulate replays at most 7 days"):
        load_trace(write(tmp_path, trace.read_text() + f"{600 * week},601,1,100\n", "longer.csv"))


@pytest.mark.parametrize("text, phrase", [
    (AZURE_HEADER + "2023-11-16 18:00:00,1,inf\n", ":2: GeneratedTokens must be a finite number >= 0, got 'inf'"),
    (AZURE_HEADER + "2023-11-16 18:00:00,1,nan\n", ":2: GeneratedTokens must be a finite number >= 0, got 'nan'"),
    (AZURE_HEADER + "2023-11-16 18:00:00,1,-1\n", ":2: GeneratedTokens must be a finite number >= 0, got '-1'"),
    (AGGREGATE_HEADER + "0,600,1,inf\n", ":2: expected finite numbers in window_start_s, window_s, req_per_s, "
                                         "exp_gen_tok_per_s, got ['0', '600', '1', 'inf']"),
    (AGGREGATE_HEADER + "nan,600,1,1\n", ":2: expected finite numbers in"),
    (AGGREGATE_HEADER + "0,600,-inf,1\n", ":2: expected finite numbers in"),
    (AZURE_HEADER + "".join(f"2023-11-16 18:00:0{i},1,1e308\n" for i in range(4)),
     ": the token counts are too large to add up (the demand overflows a float)"),
    (AGGREGATE_HEADER + "0,600,1e308,1e308\n600,600,1e308,1e308\n",
     ": the rates are too large to add up (the demand overflows a float)"),
    (AZURE_HEADER + '"' + "x" * 60_000 + "\n" * 3 + "x" * 80_000 + "\n", ":5: line longer than 65536 characters"),
    (AZURE_HEADER + '"' + "x\n" * 70_000, ":65538: not a CSV row (field larger than field limit (131072))"),
    (AZURE_HEADER + "2023-11-16 18:00:00," + "1" * 10_000 + ",x\n",
     ":2: expected TIMESTAMP,ContextTokens,GeneratedTokens, got ['2023-11-16 18:00:00', '1111"),
])
def test_simulate_bad_numbers_and_rows_in_a_trace_are_one_line(text, phrase, tmp_path, capsys):
    trace = write(tmp_path, text)
    line = assert_input_error(simulate(trace, capsys), "simulate", f"{trace}{phrase}")
    assert len(line) < 600, "a hostile row is quoted cut short"


def test_simulate_an_over_size_trace_is_refused_before_it_is_read(tmp_path, capsys, monkeypatch):
    trace = tmp_path / "big.csv"
    with trace.open("wb") as handle:  # sparse: 65 MiB on paper, no disk and no memory
        handle.truncate(traces.MAX_TRACE_BYTES + 2**20)
    opened: list[Path] = []
    real_open = Path.open
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: opened.append(self) or real_open(self, *a, **k))
    assert_input_error(simulate(trace, capsys), "simulate", f"{trace} is 65 MiB, more than the 64 MiB simulate "
                       "reads from a trace file: cut it into pieces")
    assert trace not in opened


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_simulate_reads_a_bounded_amount_from_a_device(capsys):
    assert_input_error(run(["simulate", "--trace", "/dev/zero", "--capacity", "100"], capsys), "simulate",
                       "/dev/zero:1: line longer than 65536 characters; not a trace CSV")


@pytest.mark.parametrize("flag, value, phrase", [
    ("--capacity", "0", "expected a finite number > 0 and <= 1e+09, got '0'"),
    ("--capacity", "nan", "got 'nan'"),
    ("--capacity", "-5", "got '-5'"),
    ("--cold-start", "inf", "expected a finite number >= 0 and <= 86400"),
    ("--utilization", "1.5", "expected a finite number > 0 and <= 1"),
    ("--scale", "inf", "expected a finite number > 0 and <= 1e+12, got 'inf' (or 'auto')"),
    ("--scale", "0", "(or 'auto')"),
    ("--decode-speed", "0", "expected a finite number > 0 and <= 1e+06"),
    ("--scrape-interval", "1e-9", "expected a finite number >= 1 and <= 60"),
    ("--control-interval", "nan", "expected a finite number >= 1 and <= 3600"),
    ("--price-per-hour", "inf", "expected a finite number >= 0 and <= 1e+06"),
    ("--min-replicas", "1000000000", "expected a whole number >= 0 and <= 1000"),
    ("--max-replicas", "0", "expected a whole number >= 1 and <= 1000"),
    ("--max-num-seqs", "0", "expected a whole number >= 1 and <= 65536"),
])
def test_simulate_numbers_are_checked_while_parsing_arguments(flag, value, phrase, tmp_path, capsys):
    trace = write(tmp_path, AGGREGATE_HEADER + "0,600,1,100\n")
    assert_input_error(simulate(trace, capsys, f"{flag}={value}"), "simulate", f"argument {flag}: ", phrase)


def test_simulate_a_scale_needing_more_replicas_than_the_bound_is_refused(tmp_path, capsys):
    trace = write(tmp_path, AGGREGATE_HEADER + "0,600,1,100\n600,600,1,300\n")
    assert_input_error(simulate(trace, capsys, "--scale", "1e6"), "simulate",
                       "at demand ×1e+06 the busiest second of trace.csv needs 3,000,000 replicas of 100 tok/s; "
                       f"simulate models at most {autoscale_cli.MAX_REPLICAS}: lower --scale or raise --capacity")


def test_simulate_errors_from_the_settings_are_one_line_too(tmp_path, capsys):
    trace = write(tmp_path, AGGREGATE_HEADER + "0,600,1,100\n")
    assert_input_error(simulate(trace, capsys, "--min-replicas", "5", "--max-replicas", "2"), "simulate",
                       "max_replicas must be >= max(min_replicas, 1)")


def test_simulate_mixed_time_zones_as_users_run_it(tmp_path):
    trace = write(tmp_path, AZURE_HEADER + "2023-11-16 18:00:00,1,20\n2023-11-16 18:00:01+00:00,1,20\n")
    proc = subprocess.run([sys.executable, "-m", "neuroscale", "simulate", "--trace", str(trace), "--capacity", "100",
                           "--no-plot", "--out", str(tmp_path / "out")], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr.splitlines() == [f"neuroscale simulate: {trace}:3: TIMESTAMP '2023-11-16 18:00:01+00:00' has a "
                                        "time zone but line 2's has none; give every row a time zone or none"]
