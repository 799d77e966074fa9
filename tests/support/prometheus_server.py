"""Runs the real Prometheus binary on a free loopback port for tests, with reloadable static scrape targets."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml

PROMETHEUS_BINARY = os.environ.get("NEUROSCALE_TEST_PROMETHEUS", "/usr/bin/prometheus")
JOB_NAME = "engines"


@dataclass(frozen=True)
class ScrapeTarget:
    """One scraped endpoint; `labels` land on every series it exposes (e.g. namespace and pod)."""

    address: str
    labels: Mapping[str, str] = field(default_factory=dict)


def pod_target(address: str, namespace: str, pod: str, **labels: str) -> ScrapeTarget:
    """A target labeled the way a PodMonitor labels a pod's series."""
    return ScrapeTarget(address=address, labels={"namespace": namespace, "pod": pod, **labels})


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrometheusServer:
    """One Prometheus process: storage and config in `workdir`, listening on 127.0.0.1 only."""

    def __init__(self, workdir: Path, scrape_interval: str = "1s", binary: str = PROMETHEUS_BINARY) -> None:
        self.workdir = workdir
        self.scrape_interval = scrape_interval
        self.binary = binary
        self.port = 0
        self.targets: tuple[ScrapeTarget, ...] = ()
        self._process: subprocess.Popen[bytes] | None = None
        self._config = workdir / "prometheus.yml"
        self._log = workdir / "prometheus.log"
        self._http = requests.Session()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(
        self, targets: Iterable[ScrapeTarget] | None = None, timeout_s: float = 30.0, healthy: bool = True
    ) -> PrometheusServer:
        """Start (or restart, on the same port and storage) and wait until Prometheus scrapes its targets.

        Prometheus hands discovered targets to the scrape manager at most every 5 s, so a start or a
        target change with targets costs about that long.
        """
        if self.running:
            raise RuntimeError(f"Prometheus already running at {self.url}")
        if targets is not None:
            self.targets = tuple(targets)
        self._write_config()
        keep_port = self.port != 0
        # A fresh port can be taken between probing and binding; try another one.
        for _ in range(1 if keep_port else 3):
            if not keep_port:
                self.port = free_loopback_port()
            self._spawn()
            if self._wait_ready(timeout_s):
                if self.targets:
                    self.wait_for_targets(healthy=healthy)
                return self
            self.stop()
        raise RuntimeError(f"Prometheus did not become ready on {self.url}:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=timeout_s)
        self._process = None
        self._http.close()

    def set_targets(self, targets: Iterable[ScrapeTarget], wait: bool = True) -> None:
        """Replace the scrape targets through the lifecycle reload endpoint."""
        self.targets = tuple(targets)
        self._write_config()
        response = self._http.post(f"{self.url}/-/reload", timeout=10)
        if response.status_code != 200:
            raise RuntimeError(f"Prometheus reload failed ({response.status_code}): {response.text}")
        if wait:
            self.wait_for_targets()

    def wait_for_targets(self, timeout_s: float = 15.0, healthy: bool = True) -> None:
        """Block until exactly the configured targets are active and (if `healthy`) scraped successfully."""
        wanted = {f"http://{target.address}/metrics" for target in self.targets}
        deadline = time.monotonic() + timeout_s
        active: list[dict] = []
        while time.monotonic() < deadline:
            answer = self._http.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=5).json()
            active = answer["data"]["activeTargets"]
            if {item["scrapeUrl"] for item in active} == wanted and (
                not healthy or all(item["health"] == "up" for item in active)
            ):
                return
            time.sleep(0.1)
        states = {item["scrapeUrl"]: (item["health"], item.get("lastError")) for item in active}
        raise TimeoutError(f"targets not ready after {timeout_s}s: want {sorted(wanted)}, have {states}")

    def query(self, promql: str) -> list[dict]:
        """An instant query, for tests that check what Prometheus holds."""
        answer = self._http.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5).json()
        if answer.get("status") != "success":
            raise RuntimeError(f"query {promql!r} failed: {answer}")
        return list(answer["data"]["result"])

    def wait_for(self, promql: str, predicate: Callable[[list[dict]], bool], timeout_s: float = 15.0) -> list[dict]:
        """Poll an instant query until `predicate(result)` holds; returns that result."""
        deadline = time.monotonic() + timeout_s
        result = self.query(promql)
        while not predicate(result):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{promql!r} never satisfied the condition; last result {result}")
            time.sleep(0.2)
            result = self.query(promql)
        return result

    def log_tail(self, lines: int = 30) -> str:
        if not self._log.exists():
            return "(no log)"
        return "\n".join(self._log.read_text(errors="replace").splitlines()[-lines:])

    def _write_config(self) -> None:
        static_configs = [{"targets": [target.address], "labels": dict(target.labels)} for target in self.targets]
        config = {
            "global": {"scrape_interval": self.scrape_interval, "scrape_timeout": self.scrape_interval},
            "scrape_configs": [{"job_name": JOB_NAME, "static_configs": static_configs}],
        }
        self._config.write_text(yaml.safe_dump(config, sort_keys=False))

    def _spawn(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self._config}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--web.enable-lifecycle",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def _wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.running:
                return False
            try:
                if self._http.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return True
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        return False


def prometheus_available() -> bool:
    return shutil.which(PROMETHEUS_BINARY) is not None


@pytest.fixture(scope="session")
def prometheus_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., PrometheusServer]]:
    """Starts independent Prometheus servers on demand: `prometheus_factory(targets=[...])`; all stop at the end."""
    if not prometheus_available():
        pytest.skip(f"Prometheus binary not found at {PROMETHEUS_BINARY}")
    servers: list[PrometheusServer] = []

    def start(targets: Iterable[ScrapeTarget] = (), scrape_interval: str = "1s") -> PrometheusServer:
        server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), scrape_interval=scrape_interval)
        servers.append(server)
        return server.start(targets)

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="module")
def prometheus(prometheus_factory: Callable[..., PrometheusServer]) -> Iterator[PrometheusServer]:
    """A module's shared Prometheus with no targets yet; tests call `set_targets`."""
    server = prometheus_factory()
    yield server
    server.stop()
