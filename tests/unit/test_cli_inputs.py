"""Hostile input to the `neuroscale` command line (issue "Hardening", item 10).

Every input error, whichever subcommand meets it, ends the same way: exactly one line on stderr,
``neuroscale <command>: <what is wrong>``, no traceback, exit status 2, and bounded time and memory. The CLI runs
in process through `neuroscale.cli.main` (one case also as a subprocess, as users run it). Memory bounds are
asserted as refusals (an over-size file is refused before it is parsed), never by timing.

Covers: the shared mechanism (InputError caught in `main`, argparse errors on one line, the shared number
validators); `size --params-billions nan|inf|1e308` and other out-of-range numbers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from neuroscale import cli
from neuroscale.api import cli as crds_cli

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
