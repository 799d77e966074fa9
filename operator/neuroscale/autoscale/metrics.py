"""Reads serving metrics from Prometheus (or Amazon Managed Service for Prometheus) for the autoscaler."""

from __future__ import annotations

import logging
import math
import re
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

from neuroscale.autoscale.promql import (
    SIGNAL_LABEL,
    SIGNALS,
    MetricsTarget,
    check_rate_window,
    engine_queries,
    gateway_demand_query,
    series_selector,
    signals_query,
)

__all__ = [
    "MetricsProblem",
    "MetricsReading",
    "MetricsSource",
    "MetricsTarget",
    "PrometheusSettings",
    "same_endpoint",
]

log = logging.getLogger(__name__)
AMP_SIGNING_SERVICE = "aps"
_MAX_CAUSE_CHARS = 300
_MAX_LOGGED_BODY_CHARS = 2000
_DEFAULT_PORTS = {"http": 80, "https": 443}


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


def _endpoint_key(url: str) -> tuple[str, str, int | None, str, str, str]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return (scheme, (parts.hostname or "").rstrip("."), parts.port or _DEFAULT_PORTS.get(scheme),
            parts.path.rstrip("/"), parts.query, parts.username or "")


def same_endpoint(a: str, b: str) -> bool:
    """Whether two Prometheus URLs are the same endpoint: scheme, host, port (explicit or default), path (trailing
    slash aside), query and user. Anything else is another server, or another tenant (an AMP workspace) on it."""
    try:
        return _endpoint_key(a) == _endpoint_key(b)
    except ValueError:  # an unparsable port
        return False


def display_url(url: str) -> str:
    """The URL as messages show it: no userinfo and no query (either may hold a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        port = ""
    return urlunsplit((parts.scheme, host + port, parts.path, "", ""))


class _BadAnswer(Exception):
    """Prometheus answered, but not with a query result. `public` goes into status; `detail` (which may hold what
    the server sent) only into the operator's log."""

    def __init__(self, public: str, detail: str = "") -> None:
        super().__init__(public)
        self.public = public
        self.detail = detail


@dataclass(frozen=True)
class MetricsReading:
    """One observation for the policy. Values are None whenever `error` is set: never a guessed zero.

    ``tokens_per_second`` counts generated tokens. The optional signals (`promql.SIGNALS`) are summed over the
    reporting pods (``kv_cache_usage``, 0..1, averaged), and None unless every reporting pod reports them: a
    partial sum would read as less traffic.
    """

    at: float
    tokens_per_second: float | None
    queue_depth: float | None
    ready_pods_reporting: int
    error: str | None = None
    reason: MetricsProblem | None = None
    prompt_tokens_per_second: float | None = None
    requests_per_second: float | None = None
    running: float | None = None
    kv_cache_usage: float | None = None


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
        self._where = display_url(settings.url)

    def read(self, target: MetricsTarget, now: float) -> MetricsReading:
        """Read at Unix time `now`; never raises for Prometheus down, empty or stale answers."""
        queries = engine_queries(target, self.settings.rate_window)
        try:
            tokens = self._query(queries.tokens_per_second, now)
            queue = self._query(queries.queue_depth, now) if queries.queue_depth else None
            last_sample = self._query(queries.last_sample, now)
            optional = signals_query(queries)
            signals = _per_signal(self._query_raw(optional, now)) if optional else {}
        except CredentialsUnavailable as error:
            return _failed(now, MetricsProblem.CREDENTIALS_UNAVAILABLE, str(error))
        except (requests.ConnectionError, requests.Timeout) as error:
            message = f"Prometheus at {self._where} unreachable: {_cause(error)}"
            return _failed(now, MetricsProblem.PROMETHEUS_UNREACHABLE, message)
        except requests.TooManyRedirects as error:
            # Only sessions that carry credentials refuse redirects: they must not follow one to another server.
            code = getattr(error.response, "status_code", "3xx")
            message = (f"Prometheus at {self._where} redirected (HTTP {code}); the operator sends its credentials "
                       "only to the configured URL and does not follow redirects: configure the final URL")
            return _failed(now, MetricsProblem.PROMETHEUS_QUERY_FAILED, message)
        except _BadAnswer as error:
            # What the server sent stays out of status (anyone who may read the ModelDeployment reads it there).
            log.warning("Prometheus at %s %s%s", self._where, error.public,
                        f": {error.detail}" if error.detail else "")
            return _failed(now, MetricsProblem.PROMETHEUS_QUERY_FAILED,
                           f"Prometheus at {self._where} {error.public} (details in the operator log)")
        # OSError also covers a CA file that is not there (yet): requests raises it before connecting.
        except OSError as error:
            message = f"Prometheus at {self._where} failed: {_cause(error)}"
            return _failed(now, MetricsProblem.PROMETHEUS_QUERY_FAILED, message)
        return _combine(target, now, self.settings.max_sample_age_s, tokens, queue, last_sample, signals)

    def vector(self, query: str, now: float) -> list[tuple[dict[str, str], float]]:
        """Any instant-vector query at Unix time `now`, as (labels, value) per series; raises on failure
        (requests' errors, PrometheusApiClientException, ValueError for an answer that is not a vector)."""
        result = self._client().custom_query(query, params={"time": f"{now:.3f}"})
        if not isinstance(result, list):
            raise ValueError(f"expected an instant vector, got {type(result).__name__}")
        return [(dict(series["metric"]), float(series["value"][1])) for series in result]

    def read_gateway_demand(self, namespace: str, deployment: str, now: float) -> tuple[float | None, str | None]:
        """(requests cascade gateways held or bridged for the deployment within the rate window, None) or
        (None, why not): no gateway series at all is "missing", never a guessed zero."""
        query = gateway_demand_query(namespace, deployment, self.settings.rate_window)
        try:
            values = self._query(query, now)
        except CredentialsUnavailable as error:
            return None, str(error)
        except (requests.RequestException, OSError) as error:
            return None, f"Prometheus at {self._where} failed: {_cause(error)}"
        except _BadAnswer as error:
            log.warning("Prometheus at %s %s%s", self._where, error.public, f": {error.detail}" if error.detail else "")
            return None, f"Prometheus at {self._where} {error.public} (details in the operator log)"
        if not values:
            return None, f"no cascade gateway reports demand for {namespace}/{deployment}"
        return sum(values.values()), None

    def close(self) -> None:
        """Release the HTTP connection pools of every thread that queried."""
        with self._clients_lock:
            for client in self._clients:
                client.close()
            self._clients.clear()

    def _query(self, query: str, now: float) -> dict[str, float]:
        return _per_pod(self._query_raw(query, now))

    def _query_raw(self, query: str, now: float) -> object:
        try:
            return self._client().custom_query(query, params={"time": f"{now:.3f}"})
        except PrometheusApiClientException as error:
            text = str(error)
            code = re.match(r"HTTP Status Code (\d+)", text)
            raise _BadAnswer(f"answered HTTP {code.group(1)}" if code else "refused the query",
                             _truncated(text, _MAX_LOGGED_BODY_CHARS)) from None
        except (ValueError, KeyError, TypeError) as error:  # a 200 whose body is not a Prometheus answer
            body = getattr(error, "doc", None)  # a JSONDecodeError keeps the document it could not decode
            detail = f"{type(error).__name__}: {error}" + (f"; body {body!r}" if isinstance(body, str) else "")
            raise _BadAnswer("answered with something other than a Prometheus query result",
                             _truncated(detail, _MAX_LOGGED_BODY_CHARS)) from None

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
        if self._auth is not None:
            # Credentials go to the configured URL only: a redirect (to any other URL) is an error, never followed.
            # requests would drop the Authorization header on a redirect to another host, but not SigV4's
            # X-Amz-Security-Token.
            session.max_redirects = 0
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
    return _truncated(str(getattr(first, "reason", None) or error), _MAX_CAUSE_CHARS)


def _truncated(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _per_pod(result: object) -> dict[str, float]:
    """Vector result → {"namespace/pod": value}, skipping NaN samples."""
    return _per_signal(result).get("", {})


def _per_signal(result: object) -> dict[str, dict[str, float]]:
    """Vector result → {signal: {"namespace/pod": value}}, by the `SIGNAL_LABEL` tag ("" untagged), skipping NaN.

    Raises _BadAnswer for anything but an instant vector of numbers."""
    try:
        if not isinstance(result, list):
            raise ValueError(f"expected an instant vector, got {type(result).__name__}")
        values: dict[str, dict[str, float]] = {}
        for series in result:
            labels: Mapping[str, str] = series["metric"]
            value = float(series["value"][1])
            if not math.isnan(value):
                pod = f"{labels.get('namespace', '')}/{labels.get('pod', '')}"
                values.setdefault(labels.get(SIGNAL_LABEL, ""), {})[pod] = value
        return values
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise _BadAnswer("answered with something other than an instant vector",
                         f"{type(error).__name__}: {_truncated(str(error), _MAX_LOGGED_BODY_CHARS)}") from None


def _combine(
    target: MetricsTarget,
    now: float,
    max_age_s: float,
    tokens: dict[str, float],
    queue: dict[str, float] | None,
    last_sample: dict[str, float],
    signals: Mapping[str, dict[str, float]],
) -> MetricsReading:
    """Keep pods with fresh samples for every required signal; fail static unless enough of them report."""
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
            **_optional(signals, reporting),
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


def _optional(signals: Mapping[str, dict[str, float]], reporting: list[str]) -> dict[str, float | None]:
    """Each optional signal over the reporting pods: None unless every one of them reports it."""
    combined: dict[str, float | None] = {}
    for name in SIGNALS:
        values = signals.get(name, {})
        if not all(pod in values for pod in reporting):
            combined[name] = None
        elif name == "kv_cache_usage":
            combined[name] = sum(values[pod] for pod in reporting) / len(reporting)
        else:
            combined[name] = sum(values[pod] for pod in reporting)
    return combined


def _failed(now: float, problem: MetricsProblem, message: str) -> MetricsReading:
    return MetricsReading(
        at=now, tokens_per_second=None, queue_depth=None, ready_pods_reporting=0, error=message, reason=problem
    )
