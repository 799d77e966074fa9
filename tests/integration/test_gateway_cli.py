"""`neuroscale gateway` as a user runs it: the subcommand's parser, a clear non-zero exit for a missing or invalid
config file and an impossible port, and a real process serving /readyz and a chat request on loopback until SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from neuroscale.gateway import cli
from tests.support.stub_upstream import StubUpstream

ROOT = Path(__file__).resolve().parents[2]


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="neuroscale")
    cli.add_parser(parser.add_subparsers())
    return parser.parse_args(["gateway", *argv])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_missing_config_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(parse("--config", str(tmp_path / "absent.json"))) == 2
    assert "cannot read gateway config" in capsys.readouterr().err


def test_invalid_config_names_the_field(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({"model_name": "c", "tiers": [{"kind": "openai", "name": "a", "url": "http://a/v1"}]}))
    assert cli.main(parse("--config", str(path))) == 2
    assert "tiers.0.openai.model" in capsys.readouterr().err


def test_port_out_of_range(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({"model_name": "c", "tiers": [{"kind": "openai", "name": "a", "url": "http://a/v1",
                                                               "model": "m"}]}))
    assert cli.main(parse("--config", str(path), "--port", "70000")) == 2
    assert "--port must be between 0 and 65535" in capsys.readouterr().err


async def test_process_serves_until_sigterm(tmp_path: Path) -> None:
    async with StubUpstream("engine", answer="Served by a real process.") as stub:
        port = free_port()
        path = tmp_path / "gateway.json"
        path.write_text(json.dumps({"model_name": "c", "tiers": [{"kind": "openai", "name": "engine",
                                                                   "url": stub.base_url, "model": "m"}]}))
        code = ("import argparse, sys; from neuroscale.gateway.cli import main; "
                f"sys.exit(main(argparse.Namespace(config={str(path)!r}, host='127.0.0.1', port={port})))")
        process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT,
                                   env={**os.environ, "PYTHONPATH": str(ROOT / "operator")})
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):
                try:
                    with urllib.request.urlopen(base + "/readyz", timeout=1) as response:
                        assert response.status == 200
                        break
                except OSError:
                    time.sleep(0.05)
            else:
                pytest.fail("gateway process never became ready")
            body = json.dumps({"model": "c", "messages": [{"role": "user", "content": "hi"}]}).encode()
            request = urllib.request.Request(base + "/v1/chat/completions", data=body,
                                             headers={"Content-Type": "application/json"})
            # The stub shares this test's event loop, so the blocking call runs on a worker thread.
            answer = await asyncio.to_thread(lambda: json.loads(urllib.request.urlopen(request, timeout=5).read()))
            assert answer["choices"][0]["message"]["content"] == "Served by a real process."
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0
