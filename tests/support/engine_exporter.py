"""A loopback exporter that serves a serving engine's real metric names at a settable rate, one per fake pod."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Literal

from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

ExportedEngine = Literal["vllm", "tgi", "djl-lmi"]

# TGI records generated tokens per finished request; a fixed request size keeps its histogram consistent.
TGI_TOKENS_PER_REQUEST = 100.0


class _TokenCounter:
    """A counter that grows continuously with wall time at the current rate, like a busy engine's."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._base = 0.0
        self._rate = 0.0
        self._since = clock()

    def value(self) -> float:
        return self._base + self._rate * (self._clock() - self._since)

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, per_second: float) -> None:
        self._base = self.value()
        self._since = self._clock()
        self._rate = per_second


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every second would flood the test output."""


def _text_format_app(registry: CollectorRegistry) -> Callable[[WSGIEnvironment, StartResponse], object]:
    metrics_app = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> object:
        # prometheus_client 0.26 rewrites ':' to '_' in OpenMetrics sample names unless the scraper offers
        # UTF-8 escaping, which Prometheus 2.x does not; the classic text format keeps vLLM's real names.
        environ.pop("HTTP_ACCEPT", None)
        return metrics_app(environ, start_response)

    return app


class EngineExporter(Collector):
    """Serves `/metrics` on 127.0.0.1 with the names vLLM, TGI or DJL-LMI use; values change on demand.

    Usage: `with EngineExporter("vllm", tokens_per_second=50) as pod: ... pod.address ... pod.set_queue_depth(3)`.
    """

    def __init__(
        self,
        engine: ExportedEngine = "vllm",
        *,
        model_name: str = "meta-llama/Llama-3.1-8B-Instruct",
        tokens_per_second: float = 0.0,
        prompt_tokens_per_second: float = 0.0,
        queue_depth: float = 0.0,
        running: float = 0.0,
        requests_per_second: float = 0.0,
        kv_cache_usage: float = 0.0,
        kv_cache_metric: str = "vllm:kv_cache_usage_perc",
        omit: frozenset[str] = frozenset(),
        clock: Callable[[], float] = time.time,
    ) -> None:
        if engine not in ("vllm", "tgi", "djl-lmi"):
            raise ValueError(f"unknown engine {engine!r}")
        self.engine = engine
        self.model_name = model_name
        self._lock = threading.Lock()
        self._generated = _TokenCounter(clock)
        self._prompt = _TokenCounter(clock)
        self._requests = _TokenCounter(clock)
        self._generated.set_rate(tokens_per_second)
        self._prompt.set_rate(prompt_tokens_per_second)
        self._requests.set_rate(requests_per_second)
        self._kv_cache_usage = kv_cache_usage
        # vLLM renamed gpu_cache_usage_perc to kv_cache_usage_perc; older images emit only the old name.
        self._kv_cache_metric = kv_cache_metric
        # Metric families this pod does not export, as an engine version without them would not.
        self._omit = omit
        self._queue_depth = queue_depth
        self._running = running
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)
        self._server: ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("exporter is not running; call start() first")
        return int(self._server.server_port)

    @property
    def address(self) -> str:
        """host:port, as a Prometheus static target."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}/metrics"

    def start(self) -> EngineExporter:
        if self._server is None:
            self._server = make_server(
                "127.0.0.1", 0, _text_format_app(self._registry), ThreadingWSGIServer, handler_class=_QuietHandler
            )
            self._thread = threading.Thread(target=self._server.serve_forever, name="engine-exporter", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Close the socket: the next scrape fails, as when a pod disappears."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=5)
            self._server = None
            self._thread = None

    def __enter__(self) -> EngineExporter:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def set_tokens_per_second(self, value: float) -> None:
        with self._lock:
            self._generated.set_rate(value)

    def set_prompt_tokens_per_second(self, value: float) -> None:
        with self._lock:
            self._prompt.set_rate(value)

    def set_queue_depth(self, value: float) -> None:
        with self._lock:
            self._queue_depth = value

    def set_running(self, value: float) -> None:
        with self._lock:
            self._running = value

    def set_requests_per_second(self, value: float) -> None:
        with self._lock:
            self._requests.set_rate(value)

    def set_kv_cache_usage(self, value: float) -> None:
        with self._lock:
            self._kv_cache_usage = value

    def generated_tokens(self) -> float:
        """The generated-token counter as a scrape would see it now."""
        with self._lock:
            return self._generated.value()

    def collect(self) -> Iterator[Metric]:
        return (family for family in self._families() if family.name not in self._omit)

    def _families(self) -> Iterator[Metric]:
        with self._lock:
            generated = self._generated.value()
            prompt = self._prompt.value()
            finished = self._requests.value()
            rate = self._generated.rate
            queue, running, kv = self._queue_depth, self._running, self._kv_cache_usage
        if self.engine == "vllm":
            yield from self._vllm(generated, prompt, queue, running)
            yield from self._vllm_requests(finished, kv)
        elif self.engine == "tgi":
            yield from self._tgi(generated, queue, running)
            yield from self._tgi_input(prompt, generated / TGI_TOKENS_PER_REQUEST)
        else:
            yield from self._djl(rate, running)

    def _vllm(self, generated: float, prompt: float, queue: float, running: float) -> Iterator[Metric]:
        labels = ["model_name", "engine"]
        values = [self.model_name, "0"]
        families: list[Metric] = [
            CounterMetricFamily("vllm:generation_tokens", "Number of generation tokens processed.", labels=labels),
            CounterMetricFamily("vllm:prompt_tokens", "Number of prefill tokens processed.", labels=labels),
            GaugeMetricFamily("vllm:num_requests_running", "Requests in model execution batches.", labels=labels),
            GaugeMetricFamily("vllm:num_requests_waiting", "Requests waiting to be processed.", labels=labels),
        ]
        for family, value in zip(families, (generated, prompt, running, queue), strict=True):
            family.add_metric(values, value)
            yield family

    def _vllm_requests(self, finished: float, kv: float) -> Iterator[Metric]:
        labels = ["model_name", "engine"]
        success = CounterMetricFamily("vllm:request_success", "Count of successfully processed requests.",
                                      labels=[*labels, "finished_reason"])
        # vLLM keeps one series per finish reason; split the finished requests between two of them.
        success.add_metric([self.model_name, "0", "stop"], finished * 0.75)
        success.add_metric([self.model_name, "0", "length"], finished * 0.25)
        yield success
        usage = GaugeMetricFamily(self._kv_cache_metric, "KV-cache usage. 1 means 100 percent usage.", labels=labels)
        usage.add_metric([self.model_name, "0"], kv)
        yield usage

    def _tgi_input(self, prompt: float, requests_done: float) -> Iterator[Metric]:
        # Recorded per finished request, like the generated-tokens histogram, so both count the same requests.
        yield HistogramMetricFamily(
            "tgi_request_input_length",
            "Input tokens per request",
            buckets=[("+Inf", requests_done)],
            sum_value=prompt,
        )

    def _tgi(self, generated: float, queue: float, running: float) -> Iterator[Metric]:
        requests_done = generated / TGI_TOKENS_PER_REQUEST
        histogram = HistogramMetricFamily(
            "tgi_request_generated_tokens",
            "Generated tokens per request",
            buckets=[("10.0", 0.0), (str(TGI_TOKENS_PER_REQUEST), requests_done), ("+Inf", requests_done)],
            sum_value=generated,
        )
        yield histogram
        yield GaugeMetricFamily("tgi_queue_size", "Current queue size", value=queue)
        yield GaugeMetricFamily("tgi_batch_current_size", "Current batch size", value=running)

    def _djl(self, rate: float, running: float) -> Iterator[Metric]:
        # DJL publishes per-request averages: throughput per sequence times batch size is the pod's tokens/s.
        batch = max(running, 1.0)
        labels, values = ["model"], [self.model_name]
        throughput = GaugeMetricFamily("TokenThroughput", "Average per token throughput", labels=labels)
        throughput.add_metric(values, rate / batch)
        batch_size = GaugeMetricFamily("RollingBatchSize", "Average rolling batch size", labels=labels)
        batch_size.add_metric(values, batch)
        yield throughput
        yield batch_size
