"""Reads serving metrics from Prometheus (or Amazon Managed Service for Prometheus) for the autoscaler."""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.exceptions
import requests
from prometheus_api_client import PrometheusApiClientException, PrometheusConnect
from urllib3.util.retry import Retry

from neuroscale.autoscale.promql import MetricsTarget, check_rate_window, engine_queries, series_selector

__all__ = [
    "MetricsProblem",
    "MetricsReading",
    "MetricsSource",
    "MetricsTarget",
    "PrometheusSettings",
]

AMP_SIGNING_SERVICE = "aps"
_MAX_CAUSE_CHARS = 300


class MetricsProblem(StrEnum):
    """Why a reading carries no values; usable as a condition reason."""

    PROMETHEUS_UNREACHABLE = "PrometheusUnreachable"
    PROMETHEUS_QUERY_FAILED = "PrometheusQueryFailed"
    CREDENTIALS_UNAVAILABLE = "PrometheusCredentialsUnavailable"
    METRICS_MISSING = "MetricsMissing"
    METRICS_STALE = "MetricsStale"
    PODS_NOT_REPORTING = "PodsNotReporting"


@dataclass(frozen=True)
class PrometheusSettings:
    """Where and how to query Prometheus: the operator flag / Helm value, or a per-resource override."""

    url: str
    bearer_token_file: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    timeout_s: float = 5.0
    # Set → Amazon Managed Service for Prometheus, signed with boto3's default credential chain.
    sigv4_region: str | None = None
    # Must span several scrape intervals: rate() needs two samples and divides by the whole window.
    rate_window: str = "2m"
    max_sample_age_s: float = 60.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"Prometheus URL {self.url!r} must be http:// or https:// with a host")
        if self.bearer_token_file and self.sigv4_region:
            raise ValueError("bearer_token_file and sigv4_region both set the Authorization header; pick one")
        if self.timeout_s <= 0 or self.max_sample_age_s <= 0:
            raise ValueError("timeout_s and max_sample_age_s must be positive")
        check_rate_window(self.rate_window)


@dataclass(frozen=True)
class MetricsReading:
    """One observation for the policy. Values are None whenever `error` is set: never a guessed zero."""

    at: float
    tokens_per_second: float | None
    queue_depth: float | None
    ready_pods_reporting: int
    error: str | None = None
    reason: MetricsProblem | None = None


class CredentialsUnavailable(Exception):
    """No credentials to authenticate to Prometheus with."""


class BearerTokenFileAuth(requests.auth.AuthBase):
    """Sends the token read from a file on every request, so rotated (projected) tokens are picked up."""

    def __init__(self, path: str) -> None:
        self._path = path

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        try:
            with open(self._path, encoding="utf-8") as handle:
                token = handle.read().strip()
        except OSError as error:
            raise CredentialsUnavailable(f"cannot read bearer token file {self._path}: {error}") from error
        if not token:
            raise CredentialsUnavailable(f"bearer token file {self._path} is empty")
        request.headers["Authorization"] = f"Bearer {token}"
        return request


class SigV4RequestAuth(requests.auth.AuthBase):
    """Signs requests with AWS SigV4, as Amazon Managed Service for Prometheus requires."""

    def __init__(self, region: str, session: boto3.session.Session | None = None) -> None:
        self._region = region
        self._session = session or boto3.session.Session()

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        try:
            credentials = self._session.get_credentials()
            frozen = credentials.get_frozen_credentials() if credentials else None
        except botocore.exceptions.BotoCoreError as error:
            raise CredentialsUnavailable(f"AWS credentials for SigV4 failed to load: {error}") from error
        if frozen is None:
            raise CredentialsUnavailable("no AWS credentials found for SigV4 (boto3 default credential chain)")
        # requests encodes spaces as '+', which AWS decodes before it canonicalizes; send the RFC 3986
        # form so the query we sign is byte for byte the query AWS sees.
        request.url = _rfc3986_query(request.url or "")
        unsigned = botocore.awsrequest.AWSRequest(method=request.method, url=request.url, data=request.body or b"")
        botocore.auth.SigV4Auth(frozen, AMP_SIGNING_SERVICE, self._region).add_auth(unsigned)
        for name in ("Authorization", "X-Amz-Date", "X-Amz-Security-Token"):
            if name in unsigned.headers:
                request.headers[name] = unsigned.headers[name]
        return request


def _rfc3986_query(url: str) -> str:
    parts = urlsplit(url)
    query = urlencode(parse_qsl(parts.query, keep_blank_values=True), quote_via=quote)
    return urlunsplit(parts._replace(query=query))


class MetricsSource:
    """Queries the per-engine PromQL for a target and turns the answer into a MetricsReading."""

    def __init__(self, settings: PrometheusSettings) -> None:
        self.settings = settings
        self._local = threading.local()
        self._clients: list[PrometheusConnect] = []
        self._clients_lock = threading.Lock()
        self._auth: requests.auth.AuthBase | None = None
        if settings.sigv4_region:
            self._auth = SigV4RequestAuth(settings.sigv4_region)
        elif settings.bearer_token_file:
            self._auth = BearerTokenFileAuth(settings.bearer_token_file)

    def read(self, target: MetricsTarget, now: float) -> MetricsReading:
        """Read at Unix time `now`; never raises for Prometheus down, empty or stale answers."""
        queries = engine_queries(target, self.settings.rate_window)
        try:
            tokens = self._query(queries.tokens_per_second, now)
            queue = self._query(queries.queue_depth, now) if queries.queue_depth else None
            last_sample = self._query(queries.last_sample, now)
        except CredentialsUnavailable as error:
            return _failed(now, MetricsProblem.CREDENTIALS_UNAVAILABLE, str(error))
        except (requests.ConnectionError, requests.Timeout) as error:
            message = f"Prometheus at {self.settings.url} unreachable: {_cause(error)}"
            return _failed(now, MetricsProblem.PROMETHEUS_UNREACHABLE, message)
        # OSError also covers a CA file that is not there (yet): requests raises it before connecting.
        except (OSError, PrometheusApiClientException, ValueError, KeyError, TypeError) as error:
            message = f"Prometheus at {self.settings.url} failed: {_cause(error)}"
            return _failed(now, MetricsProblem.PROMETHEUS_QUERY_FAILED, message)
        return _combine(target, now, self.settings.max_sample_age_s, tokens, queue, last_sample)

    def close(self) -> None:
        """Release the HTTP connection pools of every thread that queried."""
        with self._clients_lock:
            for client in self._clients:
                client.close()
            self._clients.clear()

    def _query(self, query: str, now: float) -> dict[str, float]:
        result = self._client().custom_query(query, params={"time": f"{now:.3f}"})
        return _per_pod(result)

    def _client(self) -> PrometheusConnect:
        # requests sessions are not documented as thread-safe; the timer may read from several threads.
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._connect()
            self._local.client = client
            with self._clients_lock:
                self._clients.append(client)
        return client

    def _connect(self) -> PrometheusConnect:
        session = requests.Session()
        session.verify = False if self.settings.insecure_skip_verify else (self.settings.ca_file or True)
        # One quick retry for a dropped connection; the next timer tick is the real retry.
        retry = Retry(total=1, backoff_factor=0.1, status_forcelist=(502, 503, 504), raise_on_status=False)
        return PrometheusConnect(
            url=self.settings.url.rstrip("/"),
            session=session,
            auth=self._auth,
            retry=retry,
            timeout=self.settings.timeout_s,
        )


def _cause(error: Exception) -> str:
    """The root cause without the full query URL that requests puts in its messages."""
    first = error.args[0] if error.args else None
    text = str(getattr(first, "reason", None) or error)
    return text if len(text) <= _MAX_CAUSE_CHARS else text[: _MAX_CAUSE_CHARS - 1] + "…"


def _per_pod(result: object) -> dict[str, float]:
    """Vector result → {"namespace/pod": value}, skipping NaN samples."""
    if not isinstance(result, list):
        raise ValueError(f"expected an instant vector, got {type(result).__name__}")
    values: dict[str, float] = {}
    for series in result:
        labels: Mapping[str, str] = series["metric"]
        value = float(series["value"][1])
        if not math.isnan(value):
            values[f"{labels.get('namespace', '')}/{labels.get('pod', '')}"] = value
    return values


def _combine(
    target: MetricsTarget,
    now: float,
    max_age_s: float,
    tokens: dict[str, float],
    queue: dict[str, float] | None,
    last_sample: dict[str, float],
) -> MetricsReading:
    """Keep pods with fresh samples for every signal; fail static unless enough of them report."""
    where = f"pods matching {series_selector(target)}"
    fresh = {pod for pod, stamp in last_sample.items() if now - stamp <= max_age_s}
    reporting = sorted(pod for pod in fresh if pod in tokens and (queue is None or pod in queue))
    needed = target.min_reporting_pods
    if len(reporting) >= needed:
        return MetricsReading(
            at=now,
            tokens_per_second=sum(tokens[pod] for pod in reporting),
            queue_depth=None if queue is None else sum(queue[pod] for pod in reporting),
            ready_pods_reporting=len(reporting),
        )
    stale = {pod: now - stamp for pod, stamp in last_sample.items() if pod not in fresh}
    if stale:
        oldest = ", ".join(f"{pod} {age:.0f}s" for pod, age in sorted(stale.items()))
        problem, message = MetricsProblem.METRICS_STALE, (
            f"stale {target.engine} metrics for {where} (bound {max_age_s:.0f}s): {oldest}"
        )
    elif not last_sample and not tokens:
        problem, message = MetricsProblem.METRICS_MISSING, f"no {target.engine} metrics for {where}"
    else:
        problem, message = MetricsProblem.PODS_NOT_REPORTING, (
            f"{len(reporting)} of at least {needed} pods report {target.engine} metrics for {where}"
            + (f": {', '.join(reporting)}" if reporting else "")
        )
    return MetricsReading(
        at=now,
        tokens_per_second=None,
        queue_depth=None,
        ready_pods_reporting=len(reporting),
        error=message,
        reason=problem,
    )


def _failed(now: float, problem: MetricsProblem, message: str) -> MetricsReading:
    return MetricsReading(
        at=now, tokens_per_second=None, queue_depth=None, ready_pods_reporting=0, error=message, reason=problem
    )
