"""How a model pod leaves without cutting a stream: readiness off first, then in-flight requests finish (pure).

Deleting a pod removes it from its Service's ready endpoints, but when every endpoint is terminating (a scale to
zero) kube-proxy still sends new connections to those whose readiness probe passes (KEP-1669). So the preStop hook
first marks the pod as draining, which the readiness probe reports as not ready, waits until the kubelet has seen
that, and then waits until the engine runs and queues no request, at most as long as the longest request the spec
allows. Only then does the engine get SIGTERM; the grace period covers all of it plus the engine's own shutdown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Where the preStop hook marks the pod as draining (the `tmp` emptyDir every model pod mounts).
DRAIN_FILE = "/tmp/neuroscale-draining"
READINESS_PERIOD_SECONDS = 10
READINESS_FAILURES = 3
# No request is assumed shorter than this, nor longer than a cascade tier may take (totalSeconds ≤ 3600).
MIN_REQUEST_SECONDS = 60
MAX_REQUEST_SECONDS = 3600
# The engine's own shutdown after SIGTERM (free the Neuron cores, close the server).
ENGINE_STOP_SECONDS = 30
# Gauges of requests running and queued, per engine; DJL-LMI has none, so its pods wait the whole bound.
BUSY_GAUGES = {
    "vllm": ("vllm:num_requests_running", "vllm:num_requests_waiting"),
    "tgi": ("tgi_batch_current_size", "tgi_queue_size"),
    "djl-lmi": (),
}
# Not ready while draining, else the engine's health endpoint. Arguments in argv, no shell.
READY_CHECK = (
    "import os, sys, urllib.request; "
    "sys.exit(1) if os.path.exists(sys.argv[1]) else urllib.request.urlopen(sys.argv[2], timeout=4)"
)
# Mark draining; let readiness turn off; then wait until the engine's busy gauges (all found) read zero, or the bound.
PRE_STOP = (
    "import sys, time, urllib.request\n"
    "drain, bound, url, settle = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[5])\n"
    "names = [name for name in sys.argv[4].split(',') if name]\n"
    "open(drain, 'w').close()\n"
    "end = time.monotonic() + bound\n"
    "time.sleep(settle)\n"
    "while time.monotonic() < end:\n"
    "    try:\n"
    "        lines = urllib.request.urlopen(url, timeout=5).read().decode().splitlines()\n"
    "        seen = [float(l.rsplit(' ', 1)[1]) for l in lines if l.split('{')[0].split(' ')[0] in names]\n"
    "        if seen and sum(seen) == 0:\n"
    "            break\n"
    "    except Exception:\n"
    "        pass\n"
    "    time.sleep(2)\n"
)


@dataclass(frozen=True)
class Drain:
    """The seconds a leaving pod may spend: readiness settling plus the longest request, then the engine's stop."""

    longest_request_seconds: int

    @property
    def settle_seconds(self) -> int:
        return READINESS_PERIOD_SECONDS * READINESS_FAILURES

    @property
    def pre_stop_seconds(self) -> int:
        return self.settle_seconds + self.longest_request_seconds

    @property
    def grace_seconds(self) -> int:
        return self.pre_stop_seconds + ENGINE_STOP_SECONDS


def drain_for(max_model_len: int, tokens_per_second: float, max_num_seqs: int) -> Drain:
    """The longest request the spec allows: a whole max-length sequence generated at one sequence's share of the
    replica's full-batch throughput (prefill is much faster than decode and is covered by the rounding bounds)."""
    per_sequence = tokens_per_second / max(1, max_num_seqs)
    seconds = math.ceil(max_model_len / per_sequence) if per_sequence > 0 else MAX_REQUEST_SECONDS
    return Drain(min(MAX_REQUEST_SECONDS, max(MIN_REQUEST_SECONDS, seconds)))


def readiness_probe(port: int, health_path: str) -> dict:
    return {
        "exec": {"command": ["python3", "-c", READY_CHECK, DRAIN_FILE, f"http://127.0.0.1:{port}{health_path}"]},
        "periodSeconds": READINESS_PERIOD_SECONDS,
        "timeoutSeconds": 5,
        "failureThreshold": READINESS_FAILURES,
    }


def pre_stop(drain: Drain, engine: str, port: int, metrics_path: str) -> dict:
    names = ",".join(BUSY_GAUGES.get(engine, ()))
    return {"exec": {"command": ["python3", "-c", PRE_STOP, DRAIN_FILE, str(drain.pre_stop_seconds),
                                 f"http://127.0.0.1:{port}{metrics_path}", names, str(drain.settle_seconds)]}}
