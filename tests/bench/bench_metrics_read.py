"""What the optional engine signals add to one autoscaler read, side by side against a real Prometheus on loopback.

Four vLLM exporters (one Deployment's pods) are scraped every second. Interleaved, per round: the three required
queries alone (generated tokens/s, queue, newest sample: the read before the signals), `MetricsSource.read` as it
is (those three plus one tagged query for prompt tokens/s, finished requests/s, running and KV-cache usage), and the
same seven queries sent one by one. Prints medians over --runs rounds and the ratios.

    .venv/bin/python tests/bench/bench_metrics_read.py [--runs 300]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from neuroscale.autoscale.metrics import MetricsSource, PrometheusSettings
from neuroscale.autoscale.promql import MetricsTarget, engine_queries
from tests.support.engine_exporter import EngineExporter
from tests.support.prometheus_server import PrometheusServer, pod_target

PODS = 4
WINDOW = "10s"


def timed_ms(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=300)
    runs = parser.parse_args().runs

    exporters = [EngineExporter("vllm", tokens_per_second=100 + k, prompt_tokens_per_second=1000, queue_depth=1,
                                requests_per_second=0.5, running=4, kv_cache_usage=0.5).start() for k in range(PODS)]
    with tempfile.TemporaryDirectory() as workdir:
        prometheus = PrometheusServer(Path(workdir))
        try:
            prometheus.start([pod_target(e.address, "ml", f"llama-5d8f7c9b4-pod{k}") for k, e in enumerate(exporters)])
            source = MetricsSource(PrometheusSettings(url=prometheus.url, rate_window=WINDOW))
            target = MetricsTarget.for_deployment("ml", "llama", "vllm", min_reporting_pods=PODS)
            queries = engine_queries(target, WINDOW)
            required = [queries.tokens_per_second, queries.queue_depth or "", queries.last_sample]
            separate = required + [query for _, query in queries.signals]
            expected = sum(100 + k for k in range(PODS))
            deadline = time.monotonic() + 60
            # Until the rate window is full: a partial one under-reads every rate.
            while abs((source.read(target, time.time()).tokens_per_second or 0) - expected) > 0.05 * expected:
                if time.monotonic() > deadline:
                    raise RuntimeError("the rates never settled")
                time.sleep(0.5)
            reading = source.read(target, time.time())
            print(f"reading: {reading}")

            before, now, one_by_one = [], [], []
            for _ in range(runs):
                at = time.time()
                before.append(timed_ms(lambda: [source.vector(q, at) for q in required]))
                now.append(timed_ms(lambda: source.read(target, at)))
                one_by_one.append(timed_ms(lambda: [source.vector(q, at) for q in separate]))
            source.close()
        finally:
            prometheus.stop()
            for exporter in exporters:
                exporter.stop()

    base = statistics.median(before)
    for label, samples in (("3 required queries (the read before)", before),
                           ("read(): 3 + 1 tagged signals query", now),
                           ("7 queries, one per signal", one_by_one)):
        median = statistics.median(samples)
        p99 = statistics.quantiles(samples, n=100)[98]
        print(f"{label:40s} p50 {median:6.2f} ms  p99 {p99:6.2f} ms  ×{median / base:.2f}")


if __name__ == "__main__":
    main()
