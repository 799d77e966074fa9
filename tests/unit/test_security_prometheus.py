"""The operator's Prometheus credentials go only where they were configured (issue "Hardening", item 1).

Real loopback HTTP servers stand in for the operator's Prometheus and for a server a ModelDeployment's author
controls; each records every request's headers. Covers: a per-resource `prometheusUrl` is queried without the
operator's bearer token and without its SigV4 signature and session token, while the operator's own URL (also
when a ModelDeployment names it again, spelled with a trailing slash or the default port) still gets them; a
redirect from the operator's Prometheus to another server is not followed with credentials (requests would keep
SigV4's X-Amz-Security-Token on it); a non-2xx answer, or a 200 that is not a Prometheus result, puts its status
code in the Autoscaling condition but never the body it sent (the operator's log has it); a user:password in the
operator's own URL is not shown in messages.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from neuroscale import reasons as R
from neuroscale.api.modeldeployment import AutoscalingSpec
from neuroscale.autoscale.metrics import MetricsProblem, MetricsSource, MetricsTarget, PrometheusSettings
from neuroscale.controllers.autoscaling import Memory, prometheus_settings, step
from tests.support.factories import make_model_deployment
from tests.unit.test_security_messages import Events, FakeKube, condition

TOKEN = "operator-prometheus-token"
SECRET_BODY = "internal-service-says: password=hunter2"
ACCESS_KEY, SECRET_KEY, SESSION_TOKEN = "AKIDOPERATOR", "operator-secret-key", "operator-session-token"
EMPTY_VECTOR = {"status": "success", "data": {"resultType": "vector", "result": []}}
TARGET = MetricsTarget.for_deployment("models", "llama", "vllm")


@dataclass
class Answer:
    status: int = 200
    body: bytes = json.dumps(EMPTY_VECTOR).encode()
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})


class Recorder:
    """An HTTP server on 127.0.0.1 that records each request's headers and answers with `answer`."""

    def __init__(self, answer: Answer | None = None) -> None:
        self.answer = answer or Answer()
        self.requests: list[dict[str, str]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                recorder.requests.append({k.lower(): v for k, v in self.headers.items()})
                self.send_response(recorder.answer.status)
                for name, value in recorder.answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(recorder.answer.body)))
                self.end_headers()
                self.wfile.write(recorder.answer.body)

            do_POST = do_GET  # noqa: N815

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def header_values(self, name: str) -> list[str]:
        return [request[name.lower()] for request in self.requests if name.lower() in request]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[Callable[..., Recorder]]:
    started: list[Recorder] = []

    def start(answer: Answer | None = None) -> Recorder:
        started.append(Recorder(answer))
        return started[-1]

    yield start
    for recorder in started:
        recorder.close()


@pytest.fixture
def token_file(tmp_path: Path) -> str:
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return str(path)


@pytest.fixture
def aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """boto3's default chain sees only these static operator credentials (with a session token)."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)


def scaling(prometheus_url: str | None = None) -> AutoscalingSpec:
    return AutoscalingSpec.model_validate({"metrics": {"prometheusUrl": prometheus_url} if prometheus_url else {}})


def read_with(operator: PrometheusSettings, prometheus_url: str | None = None):
    settings = prometheus_settings(scaling(prometheus_url), operator)
    assert settings is not None
    source = MetricsSource(settings)
    try:
        return source.read(TARGET, 1_700_000_000.0)
    finally:
        source.close()


def leaked(recorder: Recorder) -> dict[str, list[str]]:
    """Every credential-bearing header the server received, by name (empty: none)."""
    names = ("Authorization", "X-Amz-Security-Token", "X-Amz-Date")
    found = {name: recorder.header_values(name) for name in names}
    return {name: values for name, values in found.items() if values}


def test_a_per_resource_url_never_gets_the_operators_bearer_token(servers, token_file) -> None:
    operator, chosen = servers(), servers()
    defaults = PrometheusSettings(url=operator.url, bearer_token_file=token_file)

    read_with(defaults, chosen.url)

    assert len(chosen.requests) >= 2, "the per-resource URL is queried"
    assert leaked(chosen) == {}
    assert operator.requests == []


def test_a_per_resource_url_never_gets_the_operators_sigv4_credentials(servers, aws_credentials) -> None:
    operator, chosen = servers(), servers()
    defaults = PrometheusSettings(url=operator.url, sigv4_region="us-east-1")

    read_with(defaults, chosen.url)

    assert chosen.requests and leaked(chosen) == {}
    assert not any(SESSION_TOKEN in value or ACCESS_KEY in value for request in chosen.requests
                   for value in request.values())


@pytest.mark.parametrize("spelled", ["{url}", "{url}/", "{url}/?", None], ids=["same", "slash", "empty-query", "unset"])
def test_the_operators_own_url_still_gets_its_token(servers, token_file, spelled: str | None) -> None:
    operator = servers()
    defaults = PrometheusSettings(url=operator.url, bearer_token_file=token_file)
    url = spelled.format(url=operator.url).rstrip("?") if spelled else None

    reading = read_with(defaults, url)

    assert operator.header_values("Authorization") and set(operator.header_values("Authorization")) == {
        f"Bearer {TOKEN}"}
    assert reading.reason == MetricsProblem.METRICS_MISSING


def test_default_ports_and_host_case_are_the_same_endpoint() -> None:
    defaults = PrometheusSettings(url="https://Prometheus.example:443/workspaces/ws-1",
                                  bearer_token_file="/var/run/token")
    same = prometheus_settings(scaling("https://prometheus.example/workspaces/ws-1/"), defaults)
    assert same is defaults
    for other in ("https://prometheus.example/workspaces/ws-2", "http://prometheus.example:443/workspaces/ws-1",
                  "https://prometheus.example:8443/workspaces/ws-1", "https://prometheus.example.evil/workspaces/ws-1"):
        settings = prometheus_settings(scaling(other), defaults)
        assert settings is not None and settings.bearer_token_file is None and settings.sigv4_region is None, other
        assert settings.url == other


def test_a_per_resource_url_keeps_the_operators_non_secret_settings() -> None:
    defaults = PrometheusSettings(url="http://prometheus:9090", sigv4_region="us-east-1", ca_file="/ca.pem",
                                  rate_window="5m", timeout_s=3.0)
    settings = prometheus_settings(scaling("https://other:9090/"), defaults)
    assert settings == PrometheusSettings(url="https://other:9090/", ca_file="/ca.pem", rate_window="5m", timeout_s=3.0)
    assert prometheus_settings(scaling(), None) is None
    assert prometheus_settings(scaling("http://p:9090"), None) == PrometheusSettings(url="http://p:9090")


@pytest.mark.parametrize("auth", ["bearer", "sigv4"])
def test_credentials_do_not_follow_a_redirect_to_another_server(servers, token_file, aws_credentials, auth) -> None:
    elsewhere = servers()
    operator = servers(Answer(status=302, body=b"", headers={"Location": elsewhere.url + "/api/v1/query"}))
    defaults = (PrometheusSettings(url=operator.url, bearer_token_file=token_file) if auth == "bearer"
                else PrometheusSettings(url=operator.url, sigv4_region="us-east-1"))

    reading = read_with(defaults)

    assert operator.requests, "the configured URL is asked"
    assert leaked(elsewhere) == {}
    assert elsewhere.requests == [], "a redirect is not followed with credentials"
    assert reading.reason == MetricsProblem.PROMETHEUS_QUERY_FAILED
    assert "redirected (HTTP 302)" in (reading.error or "") and "configure the final URL" in (reading.error or "")


def model_deployment(prometheus_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    body = make_model_deployment("llama", "models", autoscaling={
        "minReplicas": 1, "maxReplicas": 4, "metrics": {"prometheusUrl": prometheus_url}})
    body["status"] = {"sizing": {"estimatedTokensPerSecond": 400.0}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "llama", "namespace": "models"},
                  "spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 2}}
    return body, deployment


@pytest.mark.parametrize("answer, shown", [
    (Answer(status=500, body=SECRET_BODY.encode(), headers={"Content-Type": "text/plain"}), "answered HTTP 500"),
    (Answer(status=403, body=SECRET_BODY.encode()), "answered HTTP 403"),
    (Answer(status=200, body=SECRET_BODY.encode()), "answered with something other than a Prometheus query result"),
    (Answer(status=200, body=json.dumps({"status": "success", "data": {"result": [
        {"metric": {"pod": "p"}, "value": [0, SECRET_BODY]}]}}).encode()),
     "answered with something other than an instant vector"),
], ids=["500", "403", "200-not-json", "200-not-a-number"])
def test_status_never_carries_what_the_server_sent(servers, caplog, answer: Answer, shown: str) -> None:
    chosen = servers(answer)
    body, deployment = model_deployment(chosen.url + "/")
    kube, events = FakeKube(body, deployment), Events()
    spec = AutoscalingSpec.model_validate(body["spec"]["autoscaling"])
    source = MetricsSource(prometheus_settings(spec, None))  # type: ignore[arg-type]

    with caplog.at_level(logging.WARNING, logger="neuroscale.autoscale.metrics"):
        step(body, kube, source, Memory(), now=1_700_000_000.0, clock=datetime(2025, 6, 1, tzinfo=timezone.utc),
             interval_s=15.0, emit=events)
    source.close()

    autoscaling = condition(kube.get("neuroscale.io/v1alpha1", "ModelDeployment", "models", "llama"), R.AUTOSCALING)
    assert (autoscaling["status"], autoscaling["reason"]) == ("False", R.METRICS_UNAVAILABLE)
    assert shown in autoscaling["message"] and "operator log" in autoscaling["message"]
    assert "hunter2" not in json.dumps(kube.objects[("neuroscale.io/v1alpha1", "ModelDeployment", "models", "llama")])
    assert not any("hunter2" in message for _, _, message in events)
    assert "hunter2" in caplog.text, "the operator's log keeps what the server said"


def test_a_password_in_the_operators_own_url_is_not_shown(servers) -> None:
    operator = servers(Answer(status=503, body=b"busy"))
    with_password = operator.url.replace("http://", "http://scraper:pa55word@") + "/prom?tenant=secret-tenant"
    reading = MetricsSource(PrometheusSettings(url=with_password)).read(TARGET, 1_700_000_000.0)
    assert reading.reason == MetricsProblem.PROMETHEUS_QUERY_FAILED
    assert f"Prometheus at {operator.url}/prom answered HTTP 503" in (reading.error or "")
    assert "pa55word" not in (reading.error or "") and "secret-tenant" not in (reading.error or "")
