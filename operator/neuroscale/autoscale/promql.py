"""PromQL per serving engine for the autoscaler's metrics, with safely escaped pod selection (pure)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal, get_args

Engine = Literal["vllm", "tgi", "djl-lmi"]
ENGINES: tuple[str, ...] = get_args(Engine)

# A Deployment's pods are named <deployment>-<pod-template-hash>-<5 random chars>. Matching exactly two
# dash-free segments after the name keeps Deployment "llama" from also selecting the pods of "llama-8b".
_DEPLOYMENT_POD_SUFFIX = "-[a-z0-9]+-[a-z0-9]+"
_RE2_SPECIAL = frozenset("\\.+*?()|[]{}^$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RANGE = re.compile(r"^[1-9][0-9]*(ms|s|m|h)$")


@dataclass(frozen=True)
class MetricsTarget:
    """Which pods' metrics to read, built by the operator from a ModelDeployment.

    Series are selected by the `namespace` and `pod` labels that every usual scrape setup attaches
    (PodMonitor, ServiceMonitor with pod target labels, the `kubernetes-pods` annotation job), so users
    need no extra relabeling. `pod_selector` also matches pod labels a scrape config copies onto series;
    keys are sanitized the way Prometheus does it (`app.kubernetes.io/name` → `app_kubernetes_io_name`).
    """

    namespace: str
    engine: Engine
    pod_selector: dict[str, str] | None = None
    pod_regex: str | None = None
    min_reporting_pods: int = 1

    def __post_init__(self) -> None:
        if not self.namespace:
            raise ValueError("MetricsTarget.namespace must not be empty")
        if self.engine not in ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; expected one of {', '.join(ENGINES)}")
        if not self.pod_selector and not self.pod_regex:
            raise ValueError(
                "MetricsTarget needs pod_regex or pod_selector: without one it would read every pod in "
                f"namespace {self.namespace!r}"
            )
        for key in self.pod_selector or {}:
            if not _LABEL_NAME.match(prometheus_label_name(key)):
                raise ValueError(f"pod_selector key {key!r} cannot be a Prometheus label name")
        if self.min_reporting_pods < 1:
            raise ValueError(f"min_reporting_pods must be at least 1, got {self.min_reporting_pods}")

    def __hash__(self) -> int:
        # The generated hash would fail on the dict field; hash a frozen view of it instead.
        selector_items = tuple(sorted((self.pod_selector or {}).items()))
        return hash((self.namespace, self.engine, selector_items, self.pod_regex, self.min_reporting_pods))

    @classmethod
    def for_deployment(
        cls, namespace: str, deployment: str, engine: Engine, min_reporting_pods: int = 1
    ) -> MetricsTarget:
        """Target the pods of one Deployment by name, whatever characters the name holds."""
        if not deployment:
            raise ValueError("deployment name must not be empty")
        return cls(
            namespace=namespace,
            engine=engine,
            pod_regex=re2_escape(deployment) + _DEPLOYMENT_POD_SUFFIX,
            min_reporting_pods=min_reporting_pods,
        )


# The label `signals_query` tags each optional signal's series with (engines and scrape configs attach no such label).
SIGNAL_LABEL = "neuroscale_signal"
# Optional signals (summed over pods, except the KV-cache share, averaged): what the engine reports beyond the
# generated tokens and the queue. A missing one is None in the reading, never a failed read.
SIGNALS = ("prompt_tokens_per_second", "requests_per_second", "running", "kv_cache_usage")


@dataclass(frozen=True)
class EngineQueries:
    """Instant-vector queries, each returning one series per (namespace, pod).

    ``signals``: (name, query) for each optional signal of `SIGNALS` the engine reports.
    """

    tokens_per_second: str
    queue_depth: str | None
    last_sample: str
    signals: tuple[tuple[str, str], ...] = field(default=())


def promql_string(value: str) -> str:
    """Quote `value` as a PromQL double-quoted string literal (Go escaping rules)."""
    out = []
    for char in value:
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif char == "\r":
            out.append("\\r")
        elif char == "\t":
            out.append("\\t")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def re2_escape(text: str) -> str:
    """Escape RE2 metacharacters so `text` matches itself literally."""
    return "".join("\\" + char if char in _RE2_SPECIAL else char for char in text)


def prometheus_label_name(key: str) -> str:
    """The label name a Kubernetes label key becomes after Prometheus' relabeling sanitization."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def series_selector(target: MetricsTarget) -> str:
    """Label matchers selecting exactly the target's pods, e.g. `{namespace="ml",pod=~"llama-…"}`."""
    matchers = [f"namespace={promql_string(target.namespace)}"]
    if target.pod_regex:
        matchers.append(f"pod=~{promql_string(target.pod_regex)}")
    for key, value in sorted((target.pod_selector or {}).items()):
        matchers.append(f"{prometheus_label_name(key)}={promql_string(value)}")
    return "{" + ",".join(matchers) + "}"


def check_rate_window(rate_window: str) -> None:
    """Reject anything but a single-unit PromQL duration, so no text is spliced into a range selector."""
    if not _RANGE.match(rate_window):
        raise ValueError(f"rate_window {rate_window!r} is not a PromQL duration such as 30s or 2m")


_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def window_seconds(rate_window: str) -> float:
    """A PromQL duration such as 2m, in seconds."""
    check_rate_window(rate_window)
    unit = "ms" if rate_window.endswith("ms") else rate_window[-1]
    return float(rate_window[: -len(unit)]) * _UNIT_SECONDS[unit]


def engine_queries(target: MetricsTarget, rate_window: str = "2m") -> EngineQueries:
    """The per-pod queries for the target's engine (metric names from each engine's documentation)."""
    check_rate_window(rate_window)
    sel = series_selector(target)
    by_pod = "by (namespace, pod)"
    if target.engine == "vllm":
        return EngineQueries(
            tokens_per_second=f"sum {by_pod} (rate(vllm:generation_tokens_total{sel}[{rate_window}]))",
            queue_depth=f"sum {by_pod} (vllm:num_requests_waiting{sel})",
            last_sample=f"max {by_pod} (timestamp(vllm:num_requests_waiting{sel}))",
            signals=(
                ("prompt_tokens_per_second", f"sum {by_pod} (rate(vllm:prompt_tokens_total{sel}[{rate_window}]))"),
                # One series per finish reason (stop, length, abort): all of them ended and left the batch.
                ("requests_per_second", f"sum {by_pod} (rate(vllm:request_success_total{sel}[{rate_window}]))"),
                ("running", f"sum {by_pod} (vllm:num_requests_running{sel})"),
                # kv_cache_usage_perc (0..1) replaced gpu_cache_usage_perc; older images emit only the old name.
                ("kv_cache_usage", f"avg {by_pod} (vllm:kv_cache_usage_perc{sel}) "
                                   f"or avg {by_pod} (vllm:gpu_cache_usage_perc{sel})"),
            ),
        )
    if target.engine == "tgi":
        # The histograms' _sum and _count grow when a request ends, so these lag by one request duration; counting
        # requests from the generated-tokens histogram keeps tokens and requests in step.
        return EngineQueries(
            tokens_per_second=f"sum {by_pod} (rate(tgi_request_generated_tokens_sum{sel}[{rate_window}]))",
            queue_depth=f"sum {by_pod} (tgi_queue_size{sel})",
            last_sample=f"max {by_pod} (timestamp(tgi_queue_size{sel}))",
            signals=(
                ("prompt_tokens_per_second",
                 f"sum {by_pod} (rate(tgi_request_input_length_sum{sel}[{rate_window}]))"),
                ("requests_per_second",
                 f"sum {by_pod} (rate(tgi_request_generated_tokens_count{sel}[{rate_window}]))"),
                ("running", f"sum {by_pod} (tgi_batch_current_size{sel})"),
            ),
        )
    # DJL-LMI publishes averages, not counters: per-request token throughput times the rolling batch size
    # approximates the pod's generated tokens/s. It has no queue-length gauge, and no prompt or request counts.
    return EngineQueries(
        tokens_per_second=f"avg {by_pod} (TokenThroughput{sel}) * avg {by_pod} (RollingBatchSize{sel})",
        queue_depth=None,
        last_sample=f"max {by_pod} (timestamp(TokenThroughput{sel}))",
        signals=(("running", f"avg {by_pod} (RollingBatchSize{sel})"),),
    )


def signals_query(queries: EngineQueries) -> str | None:
    """Every optional signal in one query (one round trip), each series tagged with its name in `SIGNAL_LABEL`;
    None when the engine reports none. Signals carry distinct tags, so `or` keeps all of their series."""
    tagged = [f'label_replace({query}, "{SIGNAL_LABEL}", "{name}", "", "")' for name, query in queries.signals]
    return " or ".join(tagged) or None


# What a cascade gateway counts for a ModelDeployment tier it held or bridged requests for (gateway/warmup.py).
GATEWAY_COLD_REQUESTS = "neuroscale_gateway_cold_requests_total"


def gateway_demand_query(namespace: str, deployment: str, rate_window: str = "2m") -> str:
    """Requests every gateway replica held or bridged for `namespace/deployment` within the window, summed.

    Gateways and the ModelDeployments they front share a namespace (cascade tiers are namespace-local), so the
    scrape's `namespace` label of the gateway pod and the counter's `model_deployment` label select exactly one.
    """
    check_rate_window(rate_window)
    if not deployment:
        raise ValueError("deployment name must not be empty")
    selector = f"{{namespace={promql_string(namespace)},model_deployment={promql_string(deployment)}}}"
    return f"sum(increase({GATEWAY_COLD_REQUESTS}{selector}[{rate_window}]))"


def promql(engine: Engine, target: MetricsTarget, rate_window: str = "2m") -> tuple[str, str | None]:
    """(tokens/s query, queue-depth query) for `engine`; the queue query is None where the engine has none."""
    if engine != target.engine:
        raise ValueError(f"engine {engine!r} does not match the target's engine {target.engine!r}")
    queries = engine_queries(target, rate_window)
    return queries.tokens_per_second, queries.queue_depth
