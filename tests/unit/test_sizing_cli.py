"""Covers `neuroscale size`: registration on a subparsers object with `func` set, --help with examples,
text and JSON output, every flag reaching the request (dtype, KV dtype, lengths, instance, TP, families,
parameter count), argparse rejecting bad choices, and SizingError going to stderr with exit status 2 through the
`neuroscale` entry point (tests/unit/test_cli_inputs.py has the hostile numbers)."""

from __future__ import annotations

import argparse
import json

import pytest

from neuroscale import cli
from neuroscale.sizing.cli import add_parser, main


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="neuroscale")
    add_parser(parser.add_subparsers(dest="command"))
    return parser


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_registers_size_with_main() -> None:
    args = _parser().parse_args(["size", "hf://meta-llama/Llama-3.1-8B"])
    assert args.func is main
    assert (args.dtype, args.kv_cache_dtype, args.max_model_len, args.max_num_seqs, args.output) == (
        "bf16", "auto", 4096, 8, "text",
    )


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(["size", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    assert "examples:\n  neuroscale size hf://meta-llama/Llama-3.1-8B-Instruct" in text
    assert "--instance-type" in text and "--tp" in text


def test_text_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["size", "hf://meta-llama/Meta-Llama-3-8B-Instruct", "--family", "inf2"], capsys)
    assert code == 0 and err == ""
    assert "inf2.8xlarge with TP 2" in out
    assert "per million tokens" in out


def test_workload_latency_and_replica_flags_reach_the_request(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(["size", "hf://meta-llama/Llama-3.3-70B-Instruct", "--family", "trn2", "--min-replicas", "2",
                         "--prompt-tokens", "2000", "--output-tokens", "100", "--max-tpot-ms", "60",
                         "--output", "json"], capsys)
    data = json.loads(out)
    assert code == 0 and (data["tensorParallel"], data["replicasPerInstance"]) == (32, 2)
    assert "2000 prompt + 100 generated tokens" in data["explanation"]
    assert "within 60 ms per output token" in data["explanation"]


def test_json_output(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        ["size", "hf://meta-llama/Llama-3.1-70B", "--instance-type", "trn1.32xlarge", "--output", "json"], capsys
    )
    assert code == 0
    data = json.loads(out)
    assert (data["instanceType"], data["tensorParallel"], data["neuronDevices"]) == ("trn1.32xlarge", 32, 16)
    assert data["neuronResource"] == {"aws.amazon.com/neuron": 16} and data["replicasPerInstance"] == 1
    low, high = data["tokensPerSecondRange"]
    assert low < data["tokensPerSecond"] < high and data["timePerOutputTokenMs"] > 0
    assert data["memoryGiB"]["required"] <= data["memoryGiB"]["capacity"]
    assert data["pricePerHour"] == 21.5
    assert data["costPerMillionTokens"] == pytest.approx(21.5 / (data["tokensPerSecond"] * 3600) * 1e6, rel=1e-3)
    assert data["model"] == {"architecture": "Llama-3.1-70B", "paramsBillions": 70.6, "estimatedShape": False}


def test_flags_reach_the_request(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(
        ["size", "s3://acme/chat/", "--params-billions", "13", "--dtype", "fp8", "--kv-cache-dtype", "fp8",
         "--max-model-len", "8192", "--max-num-seqs", "16", "--tp", "8", "--family", "inf2", "--family", "trn1",
         "--output", "json"],
        capsys,
    )
    assert code == 0
    data = json.loads(out)
    assert data["tensorParallel"] == 8
    assert data["instanceType"] == "inf2.24xlarge"
    assert data["model"]["estimatedShape"] is True
    assert data["memoryGiB"]["weights"] == pytest.approx(13e9 / 1024**3, abs=0.01)
    assert "16 sequences x 8192 tokens" in data["explanation"]


def test_sizing_error_exits_2_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _run(["size", "hf://meta-llama/Llama-3.1-70B", "--instance-type", "inf2.xlarge"], capsys)
    assert code == 2
    assert out == ""
    assert err.startswith("neuroscale size: Llama-3.1-70B in bf16 needs ~")
    assert "smallest fit: inf2.48xlarge with TP 24" in err


def test_unknown_model_tells_how_to_fix(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["size", "s3://acme/chat/"], capsys)
    assert code == 2
    assert "--params-billions" in err


@pytest.mark.parametrize(
    "argv", [["size", "m", "--dtype", "fp4"], ["size", "m", "--instance-type", "p5.48xlarge"], ["size"]]
)
def test_argparse_rejects_bad_input(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        _parser().parse_args(argv)
    assert exit_.value.code == 2
    assert "error:" in capsys.readouterr().err
