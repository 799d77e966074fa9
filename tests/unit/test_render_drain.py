"""The model pod's drain (render/drain.py): readiness off while draining, then in-flight requests finish.

Covers: the longest request derived from max model length and one sequence's share of throughput, within its bounds;
preStop, readiness settling and the grace period adding up in the rendered pod for every engine; the two scripts run
for real with the system's python3 against a loopback server speaking the engines' metric text: the readiness check
fails once the drain file exists and on an unhealthy engine, the hook returns as soon as the busy gauges read zero,
and waits out its bound when the gauges are busy or missing (an engine whose metrics it cannot read is never assumed
idle).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from neuroscale.render import drain
from neuroscale.render.modeldeployment import render_model_deployment
from tests.support.factories import make_model_deployment
from neuroscale.api.modeldeployment import ModelDeploymentSpec


def test_longest_request_from_length_and_per_sequence_throughput() -> None:
    assert drain.drain_for(4096, 400.0, 8).longest_request_seconds == 82
    assert drain.drain_for(1024, 8000.0, 8).longest_request_seconds == drain.MIN_REQUEST_SECONDS
    assert drain.drain_for(131072, 30.0, 8).longest_request_seconds == drain.MAX_REQUEST_SECONDS
    assert drain.drain_for(4096, 0.0, 8).longest_request_seconds == drain.MAX_REQUEST_SECONDS
    d = drain.drain_for(4096, 400.0, 8)
    assert (d.pre_stop_seconds, d.grace_seconds) == (82 + 30, 82 + 30 + drain.ENGINE_STOP_SECONDS)


@pytest.mark.parametrize("engine", ["vllm", "tgi", "djl-lmi"])
def test_rendered_pod_drains_within_its_grace_period(engine: str) -> None:
    spec = ModelDeploymentSpec.model_validate(make_model_deployment(engine={"name": engine})["spec"])
    rendered = render_model_deployment("llama", "ml", spec, 1)
    pod = next(o for o in rendered.objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    hook = container["lifecycle"]["preStop"]["exec"]["command"]
    bound, settle = int(hook[4]), int(hook[7])
    assert hook[3] == drain.DRAIN_FILE and hook[6] == ",".join(drain.BUSY_GAUGES[engine])
    assert settle == drain.READINESS_PERIOD_SECONDS * drain.READINESS_FAILURES
    assert bound >= settle + drain.MIN_REQUEST_SECONDS
    assert pod["terminationGracePeriodSeconds"] == bound + drain.ENGINE_STOP_SECONDS
    probe = container["readinessProbe"]
    assert probe["exec"]["command"][3] == drain.DRAIN_FILE
    assert (probe["periodSeconds"], probe["failureThreshold"]) == (drain.READINESS_PERIOD_SECONDS,
                                                                   drain.READINESS_FAILURES)


class Engine(BaseHTTPRequestHandler):
    metrics = ""
    health = 200

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        body = (self.metrics if self.path == "/metrics" else "ok").encode()
        self.send_response(200 if self.path == "/metrics" else self.health)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def engine_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Engine)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def run_hook(tmp_path: Path, url: str, bound: int, names: str) -> tuple[float, bool]:
    flag = tmp_path / "draining"
    started = time.monotonic()
    subprocess.run([sys.executable, "-c", drain.PRE_STOP, str(flag), str(bound), url + "/metrics", names, "0"],
                   check=True, timeout=bound + 10)
    return time.monotonic() - started, flag.exists()


VLLM_BUSY = ('# TYPE vllm:num_requests_running gauge\nvllm:num_requests_running{model_name="m"} 2.0\n'
             'vllm:num_requests_waiting{model_name="m"} 0.0\n')
VLLM_IDLE = VLLM_BUSY.replace("} 2.0", "} 0.0")


def test_hook_returns_once_the_engine_is_idle(tmp_path: Path, engine_server: str) -> None:
    Engine.metrics = VLLM_IDLE
    took, marked = run_hook(tmp_path, engine_server, 20, ",".join(drain.BUSY_GAUGES["vllm"]))
    assert marked and took < 5


@pytest.mark.parametrize("metrics, names", [(VLLM_BUSY, "vllm:num_requests_running,vllm:num_requests_waiting"),
                                            (VLLM_IDLE, ""), ("other_metric 0\n", "tgi_queue_size")])
def test_hook_waits_out_its_bound_when_busy_or_blind(tmp_path: Path, engine_server: str, metrics: str,
                                                     names: str) -> None:
    Engine.metrics = metrics
    took, marked = run_hook(tmp_path, engine_server, 3, names)
    assert marked and took >= 3


def test_readiness_check_fails_while_draining_or_unhealthy(tmp_path: Path, engine_server: str) -> None:
    flag = tmp_path / "draining"

    def ready() -> int:
        return subprocess.run([sys.executable, "-c", drain.READY_CHECK, str(flag), engine_server + "/health"],
                              capture_output=True, timeout=10).returncode

    Engine.health = 200
    assert ready() == 0
    Engine.health = 503
    assert ready() != 0
    Engine.health = 200
    flag.touch()
    assert ready() != 0
