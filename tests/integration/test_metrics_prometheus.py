"""MetricsSource against a real Prometheus scraping exporters that speak the engines' real metric names.

Covers: the sum of two vLLM pods' generated tokens/s and queue depth, following a rate change; the optional
signals in one tagged query (prompt tokens/s, finished requests/s over every finish reason, running requests summed,
KV-cache usage averaged, under its new or its older name; TGI's and DJL-LMI's; a signal one pod lacks is None, never a
partial sum, and the reading stays healthy); exclusion of a
sibling Deployment's and another namespace's pods; TGI and DJL-LMI queries; a hostile label value selected
exactly; a vanished exporter (pods not reporting, then missing); samples older than the bound (stale);
Prometheus stopped (error, no values) and recovery on restart; bearer tokens (rejected, rotated, missing file)
through an authenticating proxy; SigV4 signatures recomputed and verified by a loopback server with botocore;
TLS with a CA file, a missing CA file, none, and verification skipped; concurrent reads; settings validation.
"""

from __future__ import annotations

import asyncio
import datetime
import hmac
import ipaddress
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from yarl import URL

from neuroscale.autoscale.metrics import MetricsProblem, MetricsReading, MetricsSource, PrometheusSettings
from neuroscale.autoscale.promql import MetricsTarget
from tests.support.engine_exporter import EngineExporter, ExportedEngine
from tests.support.prometheus_server import PrometheusServer, ScrapeTarget, pod_target

pytestmark = pytest.mark.slow

RATE_WINDOW = "5s"
NAMESPACE = "ml"
HOSTILE_TEAM = 'quote"back\\slash\nnewline'
TOKEN = "s3cret-token"
TEST_CREDENTIALS = Credentials("AKIDNEUROSCALETEST", "test-secret-key", "test-session-token")
REGION = "us-west-2"


class Fleet:
    """Exporters standing in for pods, all scraped by one Prometheus."""

    def __init__(self) -> None:
        self.targets: list[ScrapeTarget] = []
        self.exporters: list[EngineExporter] = []
        self.llama_a = self._pod("llama-5d8f7c9b4-abcde", "vllm", tokens_per_second=100, queue_depth=2)
        self.llama_b = self._pod("llama-5d8f7c9b4-fghij", "vllm", tokens_per_second=50, queue_depth=3)
        self._pod("llama-8b-6c7d8e9f0-klmno", "vllm", tokens_per_second=1000, queue_depth=40)
        self._pod("llama-5d8f7c9b4-pqrst", "vllm", namespace="other", tokens_per_second=2000, queue_depth=50)
        self._pod("tgi-model-7b6c5d4e3-uvwxy", "tgi", tokens_per_second=80, queue_depth=4)
        self._pod("djl-model-7b6c5d4e3-zabcd", "djl-lmi", tokens_per_second=60, running=4)
        self._pod("custom-pod", "vllm", labels={"team": HOSTILE_TEAM}, tokens_per_second=30, queue_depth=1)
        self.mixed = [
            self._pod("mixed-5d8f7c9b4-aaaaa", "vllm", tokens_per_second=100, prompt_tokens_per_second=2000,
                      requests_per_second=0.5, running=6, kv_cache_usage=0.75),
            self._pod("mixed-5d8f7c9b4-bbbbb", "vllm", tokens_per_second=50, prompt_tokens_per_second=1000,
                      requests_per_second=0.25, running=2, kv_cache_usage=0.25,
                      kv_cache_metric="vllm:gpu_cache_usage_perc"),
        ]
        self._pod("partial-5d8f7c9b4-aaaaa", "vllm", tokens_per_second=40, prompt_tokens_per_second=400,
                  requests_per_second=0.2, running=3)
        self._pod("partial-5d8f7c9b4-bbbbb", "vllm", tokens_per_second=60, prompt_tokens_per_second=600,
                  running=5, omit=frozenset({"vllm:request_success", "vllm:kv_cache_usage_perc"}))
        self._pod("tgi-input-7b6c5d4e3-uvwxy", "tgi", tokens_per_second=200, prompt_tokens_per_second=900,
                  queue_depth=1, running=7)
        self.fading = [
            self._pod("fading-6f5e4d3c2-aaaaa", "vllm", tokens_per_second=10),
            self._pod("fading-6f5e4d3c2-bbbbb", "vllm", tokens_per_second=20),
        ]

    def _pod(
        self,
        pod: str,
        engine: ExportedEngine,
        namespace: str = NAMESPACE,
        labels: dict[str, str] | None = None,
        **values: float,
    ) -> EngineExporter:
        exporter = EngineExporter(engine, **values).start()
        self.exporters.append(exporter)
        self.targets.append(pod_target(exporter.address, namespace, pod, **(labels or {})))
        return exporter

    def stop(self) -> None:
        for exporter in self.exporters:
            exporter.stop()


@pytest.fixture(scope="module")
def fleet() -> Iterator[Fleet]:
    pods = Fleet()
    yield pods
    pods.stop()


@pytest.fixture(scope="module")
def prometheus(prometheus_factory: Callable[..., PrometheusServer], fleet: Fleet) -> PrometheusServer:
    return prometheus_factory(targets=fleet.targets)


def make_settings(url: str, **overrides: object) -> PrometheusSettings:
    values: dict[str, object] = {"url": url, "rate_window": RATE_WINDOW, "timeout_s": 3.0}
    values.update(overrides)
    return PrometheusSettings(**values)  # type: ignore[arg-type]


async def read(source: MetricsSource, target: MetricsTarget, now: float | None = None) -> MetricsReading:
    return await asyncio.to_thread(source.read, target, time.time() if now is None else now)


async def read_until(
    source: MetricsSource,
    target: MetricsTarget,
    done: Callable[[MetricsReading], bool],
    timeout_s: float = 20.0,
) -> MetricsReading:
    """Poll like the autoscaler's timer until `done` holds; the rate window must fill after a change."""
    deadline = time.monotonic() + timeout_s
    reading = await read(source, target)
    while not done(reading):
        if time.monotonic() > deadline:
            pytest.fail(f"condition never held; last reading {reading}")
        await asyncio.sleep(0.5)
        reading = await read(source, target)
    return reading


def close_to(expected: float, tolerance: float = 0.05) -> Callable[[MetricsReading], bool]:
    def check(reading: MetricsReading) -> bool:
        value = reading.tokens_per_second
        return value is not None and abs(value - expected) <= tolerance * expected

    return check


def assert_failed(reading: MetricsReading, reason: MetricsProblem) -> None:
    assert reading.reason == reason, reading
    assert reading.error
    assert reading.tokens_per_second is None and reading.queue_depth is None


async def test_two_vllm_pods_sum_and_exclude_other_pods(prometheus: PrometheusServer) -> None:
    source = MetricsSource(make_settings(prometheus.url))
    target = MetricsTarget.for_deployment(NAMESPACE, "llama", "vllm", min_reporting_pods=2)
    reading = await read_until(source, target, close_to(150.0))
    assert reading.queue_depth == 5.0
    assert reading.ready_pods_reporting == 2
    assert reading.error is None and reading.reason is None


async def test_rate_change_is_followed(prometheus: PrometheusServer, fleet: Fleet) -> None:
    source = MetricsSource(make_settings(prometheus.url))
    target = MetricsTarget.for_deployment(NAMESPACE, "llama", "vllm", min_reporting_pods=2)
    fleet.llama_a.set_tokens_per_second(400)
    fleet.llama_b.set_queue_depth(7)
    try:
        reading = await read_until(source, target, close_to(450.0))
        assert reading.queue_depth == 9.0
    finally:
        fleet.llama_a.set_tokens_per_second(100)
        fleet.llama_b.set_queue_depth(3)


@pytest.mark.parametrize(("deployment", "engine", "tokens", "queue"), [
    ("tgi-model", "tgi", 80.0, 4.0),
    ("djl-model", "djl-lmi", 60.0, None),
])
async def test_secondary_engines(
    prometheus: PrometheusServer, deployment: str, engine: str, tokens: float, queue: float | None
) -> None:
    source = MetricsSource(make_settings(prometheus.url))
    target = MetricsTarget.for_deployment(NAMESPACE, deployment, engine)  # type: ignore[arg-type]
    reading = await read_until(source, target, close_to(tokens))
    assert reading.queue_depth == queue
    assert reading.ready_pods_reporting == 1


def near(expected: float, value: float | None, tolerance: float = 0.05) -> bool:
    return value is not None and abs(value - expected) <= tolerance * expected


async def test_vllm_signals_are_read_in_one_query_and_combined_over_pods(prometheus: PrometheusServer) -> None:
    source = MetricsSource(make_settings(prometheus.url))
    target = MetricsTarget.for_deployment(NAMESPACE, "mixed", "vllm", min_reporting_pods=2)
    reading = await read_until(source, target, lambda r: near(150.0, r.tokens_per_second)
                               and near(3000.0, r.prompt_tokens_per_second) and near(0.75, r.requests_per_second))
    assert reading.error is None and reading.ready_pods_reporting == 2
    assert reading.running == 8.0, "running requests add up"
    assert reading.kv_cache_usage == pytest.approx(0.5), "the mean of 0.75 (new name) and 0.25 (older name)"


async def test_a_signal_one_pod_lacks_is_none_and_the_reading_stays_healthy(prometheus: PrometheusServer) -> None:
    source = MetricsSource(make_settings(prometheus.url))
    target = MetricsTarget.for_deployment(NAMESPACE, "partial", "vllm", min_reporting_pods=2)
    reading = await read_until(source, target, lambda r: near(100.0, r.tokens_per_second)
                               and near(1000.0, r.prompt_tokens_per_second))
    assert reading.error is None and reading.reason is None
    assert reading.requests_per_second is None, "one pod has no request counter: no partial sum"
    assert reading.kv_cache_usage is None
    assert reading.running == 8.0


@pytest.mark.parametrize(("deployment", "engine", "expected"), [
    ("tgi-input", "tgi", {"tokens_per_second": 200.0, "prompt_tokens_per_second": 900.0,
                          "requests_per_second": 2.0, "running": 7.0, "kv_cache_usage": None}),
    ("djl-model", "djl-lmi", {"tokens_per_second": 60.0, "prompt_tokens_per_second": None,
                              "requests_per_second": None, "running": 4.0, "kv_cache_usage": None}),
])
async def test_secondary_engines_signals(
    prometheus: PrometheusServer, deployment: str, engine: str, expected: dict[str, float | None]
) -> None:
    source = MetricsSource(make_settings(prometheus.url))
    target = MetricsTarget.for_deployment(NAMESPACE, deployment, engine)  # type: ignore[arg-type]

    def settled(reading: MetricsReading) -> bool:
        return all(near(value, getattr(reading, name)) if value else getattr(reading, name) is None
                   for name, value in expected.items())

    reading = await read_until(source, target, settled)
    assert reading.error is None


async def test_hostile_label_value_is_matched_exactly(prometheus: PrometheusServer) -> None:
    source = MetricsSource(make_settings(prometheus.url))
    exact = MetricsTarget(namespace=NAMESPACE, engine="vllm", pod_selector={"team": HOSTILE_TEAM})
    reading = await read_until(source, exact, close_to(30.0))
    assert reading.ready_pods_reporting == 1
    near = MetricsTarget(namespace=NAMESPACE, engine="vllm", pod_selector={"team": HOSTILE_TEAM[:-1]})
    assert_failed(await read(source, near), MetricsProblem.METRICS_MISSING)
    injected = MetricsTarget.for_deployment(NAMESPACE, "llama.*", "vllm")
    assert_failed(await read(source, injected), MetricsProblem.METRICS_MISSING)


async def test_samples_older_than_the_bound_are_stale(prometheus: PrometheusServer) -> None:
    source = MetricsSource(make_settings(prometheus.url, max_sample_age_s=30.0))
    target = MetricsTarget.for_deployment(NAMESPACE, "llama", "vllm")
    await read_until(source, target, lambda reading: reading.error is None)
    # Evaluating 2 minutes ahead sees the same newest samples, now 2 minutes old: what a lagging remote-write
    # pipeline (no staleness markers) looks like.
    reading = await read(source, target, now=time.time() + 120)
    assert_failed(reading, MetricsProblem.METRICS_STALE)
    assert "llama-5d8f7c9b4-abcde" in (reading.error or "")


async def test_vanished_exporters_are_detected(prometheus: PrometheusServer, fleet: Fleet) -> None:
    source = MetricsSource(make_settings(prometheus.url))
    both = MetricsTarget.for_deployment(NAMESPACE, "fading", "vllm", min_reporting_pods=2)
    any_one = MetricsTarget.for_deployment(NAMESPACE, "fading", "vllm")
    await read_until(source, both, close_to(30.0))
    fleet.fading[1].stop()
    reading = await read_until(source, both, lambda r: r.reason == MetricsProblem.PODS_NOT_REPORTING)
    assert_failed(reading, MetricsProblem.PODS_NOT_REPORTING)
    assert reading.ready_pods_reporting == 1
    # The gone pod's last rate lingers for a window in Prometheus; it must not be added in.
    remaining = await read(source, any_one)
    assert remaining.tokens_per_second is not None and abs(remaining.tokens_per_second - 10.0) <= 0.5
    fleet.fading[0].stop()
    reading = await read_until(source, any_one, lambda r: r.reason == MetricsProblem.METRICS_MISSING)
    assert reading.ready_pods_reporting == 0


async def test_prometheus_down_then_recovers(prometheus_factory: Callable[..., PrometheusServer]) -> None:  # noqa: F811
    with EngineExporter("vllm", tokens_per_second=40, queue_depth=1) as pod:
        server = prometheus_factory(targets=[pod_target(pod.address, NAMESPACE, "solo-5d8f7c9b4-abcde")])
        source = MetricsSource(make_settings(server.url))
        target = MetricsTarget.for_deployment(NAMESPACE, "solo", "vllm")
        await read_until(source, target, close_to(40.0))
        await asyncio.to_thread(server.stop)
        down = await read(source, target)
        assert_failed(down, MetricsProblem.PROMETHEUS_UNREACHABLE)
        assert server.url in (down.error or "")
        await asyncio.to_thread(server.start)
        recovered = await read_until(source, target, close_to(40.0))
        assert recovered.queue_depth == 1.0
        await asyncio.to_thread(server.stop)


class AuthProxy:
    """A loopback reverse proxy to Prometheus that forwards only requests `reject` returns None for."""

    def __init__(self, upstream: str, reject: Callable[[web.Request], str | None]) -> None:
        self.upstream = upstream
        self.reject = reject
        self.accepted = 0
        self.rejections: list[str] = []
        self.server = TestServer(web.Application(), host="127.0.0.1")
        self.server.app.router.add_route("*", "/{tail:.*}", self.handle)

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def handle(self, request: web.Request) -> web.Response:
        problem = self.reject(request)
        if problem:
            self.rejections.append(problem)
            return web.Response(status=403, text=problem)
        self.accepted += 1
        async with aiohttp.ClientSession() as session:
            async with session.get(URL(self.upstream + request.raw_path, encoded=True)) as upstream:
                return web.Response(status=upstream.status, body=await upstream.read(),
                                    content_type=upstream.content_type)


@pytest.fixture
async def start_proxy(prometheus: PrometheusServer) -> AsyncIterator[Callable[..., Awaitable[AuthProxy]]]:
    proxies: list[AuthProxy] = []

    async def start(reject: Callable[[web.Request], str | None], tls: ssl.SSLContext | None = None) -> AuthProxy:
        proxy = AuthProxy(prometheus.url, reject)
        await proxy.server.start_server(ssl=tls)
        proxies.append(proxy)
        return proxy

    yield start
    for proxy in proxies:
        await proxy.server.close()


def require_bearer(request: web.Request) -> str | None:
    given = request.headers.get("Authorization", "")
    return None if hmac.compare_digest(given, f"Bearer {TOKEN}") else f"bad bearer header {given!r}"


async def test_bearer_token_is_sent_and_rotation_is_picked_up(
    start_proxy: Callable[..., Awaitable[AuthProxy]], tmp_path: Path
) -> None:
    proxy = await start_proxy(require_bearer)
    token_file = tmp_path / "token"
    token_file.write_text("stale-token\n")
    source = MetricsSource(make_settings(proxy.url, bearer_token_file=str(token_file)))
    target = MetricsTarget.for_deployment(NAMESPACE, "llama", "vllm")
    rejected = await read(source, target)
    assert_failed(rejected, MetricsProblem.PROMETHEUS_QUERY_FAILED)
    assert "403" in (rejected.error or "")
    token_file.write_text(f"{TOKEN}\n")
    reading = await read_until(source, target, close_to(150.0))
    assert reading.ready_pods_reporting == 2
    assert proxy.accepted >= 3
    token_file.unlink()
    assert_failed(await read(source, target), MetricsProblem.CREDENTIALS_UNAVAILABLE)


def verify_sigv4(request: web.Request) -> str | None:
    """Recompute the signature AWS-side: canonicalize what arrived and sign it with the known secret."""
    match = re.fullmatch(
        r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
        r"SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})",
        request.headers.get("Authorization", ""),
    )
    if not match:
        return "no SigV4 Authorization header"
    access_key, day, region, service, signed_headers, signature = match.groups()
    if (access_key, region, service) != (TEST_CREDENTIALS.access_key, REGION, "aps"):
        return f"wrong credential scope {access_key}/{region}/{service}"
    amz_date = request.headers.get("X-Amz-Date", "")
    signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
    if abs(time.time() - signed_at.timestamp()) > 300 or not amz_date.startswith(day):
        return f"signature date {amz_date} outside the allowed skew"
    names = signed_headers.split(";")
    if "host" not in names or "x-amz-security-token" not in names:
        return f"host or session token not signed: {signed_headers}"
    path, _, raw_query = request.raw_path.partition("?")
    query = urlencode(parse_qsl(raw_query, keep_blank_values=True), quote_via=quote)
    canonical = AWSRequest(
        method=request.method,
        url=f"http://{request.host}{path}?{query}",
        headers={name: request.headers[name] for name in names},
    )
    canonical.context["timestamp"] = amz_date
    signer = SigV4Auth(TEST_CREDENTIALS, "aps", REGION)
    expected = signer.signature(signer.string_to_sign(canonical, signer.canonical_request(canonical)), canonical)
    return None if hmac.compare_digest(expected, signature) else "signature mismatch"


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[[Credentials | None], None]:
    """Point boto3's default credential chain at static test values only."""
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    for name in ("AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                 "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"):
        monkeypatch.delenv(name, raising=False)

    def use(credentials: Credentials | None) -> None:
        for name, value in (("AWS_ACCESS_KEY_ID", credentials and credentials.access_key),
                            ("AWS_SECRET_ACCESS_KEY", credentials and credentials.secret_key),
                            ("AWS_SESSION_TOKEN", credentials and credentials.token)):
            if value:
                monkeypatch.setenv(name, value)
            else:
                monkeypatch.delenv(name, raising=False)

    return use


async def test_sigv4_signature_verifies(
    start_proxy: Callable[..., Awaitable[AuthProxy]], aws_environment: Callable[[Credentials | None], None]
) -> None:
    proxy = await start_proxy(verify_sigv4)
    target = MetricsTarget.for_deployment(NAMESPACE, "llama", "vllm", min_reporting_pods=2)
    aws_environment(TEST_CREDENTIALS)
    source = MetricsSource(make_settings(proxy.url, sigv4_region=REGION))
    reading = await read_until(source, target, close_to(150.0))
    assert reading.queue_depth == 5.0
    assert proxy.rejections == [] and proxy.accepted >= 3

    aws_environment(Credentials(TEST_CREDENTIALS.access_key, "wrong-secret", TEST_CREDENTIALS.token))
    forged = await read(MetricsSource(make_settings(proxy.url, sigv4_region=REGION)), target)
    assert_failed(forged, MetricsProblem.PROMETHEUS_QUERY_FAILED)
    assert proxy.rejections[-1] == "signature mismatch"

    aws_environment(None)
    unsigned = await read(MetricsSource(make_settings(proxy.url, sigv4_region=REGION)), target)
    assert_failed(unsigned, MetricsProblem.CREDENTIALS_UNAVAILABLE)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "neuroscale-test-prometheus")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_file, key_file


async def test_tls_with_ca_file_without_it_and_skipping_verification(
    start_proxy: Callable[..., Awaitable[AuthProxy]], tls_files: tuple[Path, Path]
) -> None:
    cert_file, key_file = tls_files
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    proxy = await start_proxy(lambda request: None, tls=context)
    assert proxy.url.startswith("https://")
    target = MetricsTarget.for_deployment(NAMESPACE, "llama", "vllm")

    trusted = MetricsSource(make_settings(proxy.url, ca_file=str(cert_file)))
    assert (await read_until(trusted, target, close_to(150.0))).ready_pods_reporting == 2

    missing_ca = await read(MetricsSource(make_settings(proxy.url, ca_file=str(cert_file) + ".missing")), target)
    assert_failed(missing_ca, MetricsProblem.PROMETHEUS_QUERY_FAILED)
    assert "invalid path" in (missing_ca.error or "")

    untrusted = await read(MetricsSource(make_settings(proxy.url)), target)
    assert_failed(untrusted, MetricsProblem.PROMETHEUS_UNREACHABLE)
    assert "CERTIFICATE_VERIFY_FAILED" in (untrusted.error or "")

    with pytest.warns(Warning, match="Unverified HTTPS request"):
        skipped = await read(MetricsSource(make_settings(proxy.url, insecure_skip_verify=True)), target)
    assert skipped.error is None


async def test_concurrent_reads_from_threads_agree(prometheus: PrometheusServer) -> None:
    source = MetricsSource(make_settings(prometheus.url))
    target = MetricsTarget.for_deployment(NAMESPACE, "llama", "vllm", min_reporting_pods=2)
    await read_until(source, target, close_to(150.0))
    now = time.time()
    with ThreadPoolExecutor(max_workers=4) as pool:
        readings = list(pool.map(lambda _: source.read(target, now), range(8)))
    assert {reading.tokens_per_second for reading in readings} == {readings[0].tokens_per_second}
    assert all(reading.ready_pods_reporting == 2 for reading in readings)
    source.close()


@pytest.mark.parametrize(("overrides", "message"), [
    ({"url": "prometheus:9090"}, "must be http:// or https://"),
    ({"bearer_token_file": "/t", "sigv4_region": REGION}, "pick one"),
    ({"rate_window": "2m] or vector(1e9"}, "PromQL duration"),
    ({"timeout_s": 0}, "must be positive"),
])
def test_bad_settings_get_clear_errors(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_settings(**{"url": "http://127.0.0.1:9090", **overrides})
