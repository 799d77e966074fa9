"""Token-throughput autoscaling on a real API server, with a real Prometheus scraping one engine exporter per pod.

The same scenario as the kmock version it replaces: the operator reads vLLM's metric names through Prometheus and
scales the Deployment up when the served work (generated tokens/s plus prompt tokens/s at their prefill cost) exceeds
what the replicas should carry, then back down when demand falls; status reports the observed generated, prompt and
work tokens/s, running requests and KV-cache usage read from the engines, the decision and an Autoscaling condition; with Prometheus gone the
replicas are held (never scaled down on missing data) and the condition says why; scaling resumes by itself when
Prometheus returns.

Here the pods are real: the Deployment controller creates and deletes them, the scheduler places them on a fake
inf2.48xlarge node and kwok makes them Running and Ready. Each Running pod gets its own exporter, scraped under that
pod's name and namespace (as a PodMonitor labels a pod's series), and the test's total demand is shared evenly
among them, as the Service would spread it. So the autoscaler sees what it would see on EKS: new pods Ready before
Prometheus scrapes them, series vanishing with deleted pods. Also checked on the real server: ScaledUp/ScaledDown
Events, observedGeneration following generation, and with autoscaling turned off the Deployment going to
spec.replicas with the autoscaler no longer touching it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import kubernetes
import pytest
import requests

from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.controllers.autoscaling import replica_model
from neuroscale.runtime import OperatorConfig
from tests.e2e.cluster import Apis, eventually, running_operator
from tests.support.engine_exporter import EngineExporter
from tests.support.factories import make_model_deployment
from tests.support.prometheus_server import PrometheusServer, pod_target

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

GROUP, VERSION, PLURAL = "neuroscale.io", "v1alpha1", "modeldeployments"
NAME = "llama"
INTERVAL = 1.0  # the autoscaler's control interval in this test
# Per generated token the pods also report this many prompt tokens, one running request per RUNNING_EVERY tokens/s,
# and a constant KV-cache usage (as a RAG-like mix would).
PROMPT_PER_GENERATED = 2.0
RUNNING_EVERY = 50.0
KV_CACHE_USAGE = 0.25


class Fleet:
    """One vLLM exporter per Running pod of the Deployment, each scraped by Prometheus as that pod, sharing a total
    demand evenly. `sync` follows the pods the cluster really runs; `running` keeps doing so in the background."""

    def __init__(self, core: Any, namespace: str, selector: str, prometheus: PrometheusServer) -> None:
        self.core, self.namespace, self.selector, self.prometheus = core, namespace, selector, prometheus
        self.exporters: dict[str, EngineExporter] = {}
        self.demand = 0.0
        self.lock = threading.Lock()  # the exporters, and Prometheus' reloads against its stop/start
        self._applied: tuple[Any, ...] | None = None
        self._task: asyncio.Task[None] | None = None

    def set_demand(self, tokens_per_second: float) -> None:
        with self.lock:
            self.demand = tokens_per_second
            self._rebalance()

    def _rebalance(self) -> None:
        share = self.demand / max(1, len(self.exporters))
        for exporter in self.exporters.values():
            exporter.set_tokens_per_second(share)
            exporter.set_prompt_tokens_per_second(share * PROMPT_PER_GENERATED)
            exporter.set_running(share / RUNNING_EVERY)
            exporter.set_kv_cache_usage(KV_CACHE_USAGE)

    def sync(self) -> None:
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=self.selector).items
        running = {p.metadata.name for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp}
        with self.lock:
            for gone in set(self.exporters) - running:
                self.exporters.pop(gone).stop()
            for pod in sorted(running - set(self.exporters)):
                self.exporters[pod] = EngineExporter("vllm").start()
            self._rebalance()
            wanted = tuple(pod_target(e.address, self.namespace, pod) for pod, e in sorted(self.exporters.items()))
            if wanted != self._applied and self.prometheus.running:
                # Prometheus hands new targets to its scrapers within ~5 s, as service discovery would.
                self.prometheus.set_targets(wanted, wait=False)
                self._applied = wanted

    def stop_prometheus(self) -> None:
        with self.lock:
            self.prometheus.stop()

    def start_prometheus(self) -> None:
        with self.lock:
            self.prometheus.start(self._applied or ())

    def check(self) -> None:
        """Fail the polling test at once when the background sync broke."""
        if self._task is not None and self._task.done() and not self._task.cancelled():
            self._task.result()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Fleet]:
        async def loop() -> None:
            while True:
                with contextlib.suppress(kubernetes.client.ApiException, requests.RequestException):
                    await asyncio.to_thread(self.sync)
                await asyncio.sleep(0.3)

        self._task = asyncio.create_task(loop(), name="engine-fleet")
        try:
            yield self
        finally:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            with self.lock:
                for exporter in self.exporters.values():
                    exporter.stop()
                self.exporters.clear()


class Cluster(Apis):
    def md(self) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, NAME)

    def patch(self, patch: dict[str, Any]) -> dict[str, Any]:
        return self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, NAME, patch)

    def deployment(self) -> Any:
        return self.apps.read_namespaced_deployment(NAME, self.namespace)

    def replicas(self) -> int:
        return self.deployment().spec.replicas

    def running_pods(self, selector: str) -> int:
        """Pods of the Deployment that kwok made Running and Ready, and that are not on their way out."""
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return sum(1 for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp
                   and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or ()))

    def pods(self, selector: str) -> list[str]:
        """One line per pod, for failure messages."""
        pods = self.core.list_namespaced_pod(self.namespace, label_selector=selector).items
        return [f"{p.metadata.name} {p.status.phase} node={p.spec.node_name} "
                f"deleting={bool(p.metadata.deletion_timestamp)} "
                f"{[(c.type, c.status, c.reason) for c in p.status.conditions or ()]}" for p in pods]

    def events(self, reason: str) -> list[Any]:
        selector = f"involvedObject.name={NAME},involvedObject.kind=ModelDeployment,reason={reason}"
        return self.core.list_namespaced_event(self.namespace, field_selector=selector).items


def autoscaling_condition(md: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in (md.get("status") or {}).get("conditions", []) if c["type"] == "Autoscaling"), None)


def assert_observed_generation(md: dict[str, Any]) -> None:
    assert md["status"]["observedGeneration"] == md["metadata"]["generation"], (
        md["status"].get("observedGeneration"), md["metadata"]["generation"])


async def keeps(invariant: Callable[[], Any], *, seconds: float, until: Callable[[], Any] | None = None) -> None:
    """`invariant` (which asserts) holds at every poll, for `seconds` or, given `until`, until that is true (and
    fails when it is not within `seconds`): what must not happen does not, over several control intervals."""
    deadline = time.monotonic() + seconds
    while True:
        await asyncio.to_thread(invariant)
        if until is not None and await asyncio.to_thread(until):
            return
        if time.monotonic() > deadline:
            assert until is None, f"{getattr(until, '__name__', 'until')} not true within {seconds}s"
            return
        await asyncio.sleep(0.25)


async def test_scales_real_pods_with_token_throughput_and_holds_without_metrics(
    control_plane: Any, api: Any, namespace: str, prometheus_factory: Callable[..., PrometheusServer],
) -> None:
    if control_plane is None:
        pytest.skip("needs pods that run on an inf2.48xlarge node: the suite's kwok nodes (an external cluster may "
                    "have none)")
    cluster = Cluster(api, namespace)
    prometheus = prometheus_factory()
    config = OperatorConfig(resync_seconds=5.0, autoscale_interval_seconds=INTERVAL, prometheus_url=prometheus.url,
                            prometheus_rate_window="5s")
    # inf2.48xlarge at TP 2: the fake node has room for twelve of these pods (one Neuron device each), so every
    # replica the autoscaler asks for can really run (left to itself, sizing packs fewer, wider replicas there).
    body = make_model_deployment(NAME, namespace, replicas=1,
                                 accelerator={"instanceType": "inf2.48xlarge", "tensorParallelDegree": 2},
                                 autoscaling={"minReplicas": 1, "maxReplicas": 8, "targetTokensPerSecond": 100,
                                              "coldStartSeconds": 0, "scaleDownStabilizationSeconds": 3,
                                              "predictive": False})
    body["metadata"] = {"name": NAME, "namespace": namespace}

    async with running_operator(namespace, config=config):
        await asyncio.to_thread(cluster.custom.create_namespaced_custom_object, GROUP, VERSION, namespace, PLURAL,
                                body)
        md = await eventually(lambda: (m := cluster.md()).get("status", {}).get("selector") and m, timeout=60)
        selector = md["status"]["selector"]
        fleet = Fleet(cluster.core, namespace, selector, prometheus)

        def autoscaling_is(status: str, tokens_per_second: float | None = None) -> dict[str, Any]:
            """The resource once its Autoscaling condition has `status` (and status reports about that demand)."""
            md = cluster.md()
            condition, auto = autoscaling_condition(md), (md.get("status") or {}).get("autoscaling") or {}
            assert condition and condition["status"] == status, f"Autoscaling condition {condition}, want {status}"
            if tokens_per_second is not None:
                assert auto.get("observedTokensPerSecond") == pytest.approx(tokens_per_second, rel=0.2), (
                    f"status.autoscaling {auto}, want observedTokensPerSecond ~{tokens_per_second}")
            return md

        def events_since(reason: str, cutoff: datetime.datetime) -> list[Any]:
            return [e for e in cluster.events(reason) if (e.event_time or e.last_timestamp) >= cutoff]

        def pods_match_replicas(at_least: int = 1, exactly: int | None = None) -> int:
            """The Deployment's replicas once they are as asked and that many pods are Running and Ready."""
            fleet.check()
            replicas, running = cluster.replicas(), cluster.running_pods(selector)
            wanted = f"exactly {exactly}" if exactly is not None else f"at least {at_least}"
            assert (replicas == exactly) if exactly is not None else replicas >= at_least, (
                f"Deployment asks for {replicas} replicas, want {wanted}")
            assert running == replicas, (f"{running} pods Running and Ready for {replicas} replicas: "
                                         f"{cluster.pods(selector)}")
            return replicas

        async with fleet.running():
            # 250 generated tokens/s against 100 per replica: at least three replicas, all of them running pods.
            fleet.set_demand(250)
            scaled = await eventually(lambda: pods_match_replicas(at_least=3), timeout=60)
            assert scaled <= 8
            md = await eventually(lambda: autoscaling_is("True", tokens_per_second=250), timeout=45)
            # Prompt tokens count at the sized replica's prefill cost; the engines' gauges reach status.
            prefill_cost = replica_model(ModelDeploymentSpec.model_validate(body["spec"]), {}).prefill_cost
            assert 0 < prefill_cost < 0.5, prefill_cost

            def signals_in_status() -> dict[str, Any]:
                auto = cluster.md()["status"]["autoscaling"]
                generated = auto["observedTokensPerSecond"]
                assert auto.get("observedPromptTokensPerSecond") == pytest.approx(250 * PROMPT_PER_GENERATED,
                                                                                  rel=0.2), auto
                assert auto.get("observedWorkTokensPerSecond") == pytest.approx(
                    generated + auto["observedPromptTokensPerSecond"] * prefill_cost, abs=1.0), auto
                assert auto.get("runningRequests") == pytest.approx(250 / RUNNING_EVERY, abs=1.0), auto
                assert auto.get("kvCacheUsagePercent") == 100 * KV_CACHE_USAGE, auto
                return auto
            await eventually(signals_in_status, timeout=30)
            assert md["status"]["autoscaling"]["lastScaleTime"]
            assert md["status"]["autoscaling"]["desiredReplicas"] == md["status"]["desiredReplicas"] >= 3
            scaled_up = await eventually(lambda: cluster.events("ScaledUp"), timeout=30)
            assert all("tok/s" in e.message for e in scaled_up), [e.message for e in scaled_up]
            assert_observed_generation(await asyncio.to_thread(cluster.md))

            # Demand falls to 60 tokens/s in total: back to one replica, the other pods really go.
            fleet.set_demand(60)
            await eventually(lambda: pods_match_replicas(exactly=1), timeout=60)
            await eventually(lambda: cluster.events("ScaledDown"), timeout=30)
            assert_observed_generation(await asyncio.to_thread(cluster.md))

            # Demand rises again to a steady four replicas' worth (any overshoot while the new pods' rates fill the
            # window undone), then Prometheus disappears: replicas are held, the condition says why.
            fleet.set_demand(350)
            await eventually(lambda: pods_match_replicas(exactly=4), timeout=60)
            await eventually(lambda: autoscaling_is("True", tokens_per_second=350), timeout=45)
            held = 4
            stopped = datetime.datetime.now(datetime.timezone.utc)
            await asyncio.to_thread(fleet.stop_prometheus)
            md = await eventually(lambda: autoscaling_is("False"), timeout=30)
            condition = autoscaling_condition(md)
            assert condition["reason"] == "MetricsUnavailable", condition
            assert "unreachable" in condition["message"].lower(), condition

            def held_steady() -> None:
                replicas, running = cluster.replicas(), cluster.running_pods(selector)
                assert replicas == running == held, f"{replicas} replicas, {running} pods running, held {held}"

            def failing_static() -> bool:
                """The policy has no fresh sample left (it acts on the last good ones for ~30 s) and holds."""
                decision = ((cluster.md().get("status") or {}).get("autoscaling") or {}).get("lastDecision") or ""
                return "failing static" in decision
            await keeps(held_steady, until=failing_static, seconds=60)
            await keeps(held_steady, seconds=3 * INTERVAL)
            assert not await asyncio.to_thread(events_since, "ScaledDown", stopped)
            assert_observed_generation(await asyncio.to_thread(cluster.md))

            # Prometheus is back: the condition recovers without anyone touching the resource.
            await asyncio.to_thread(fleet.start_prometheus)
            await eventually(lambda: autoscaling_is("True", tokens_per_second=350), timeout=60)
            assert_observed_generation(await asyncio.to_thread(cluster.md))

            # Autoscaling turned off: spec.replicas owns the Deployment again, and the autoscaler lets it be even
            # when demand would ask for eight replicas.
            patched = await asyncio.to_thread(cluster.patch, {"spec": {"replicas": 2,
                                                                       "autoscaling": {"enabled": False}}})
            await eventually(lambda: pods_match_replicas(exactly=2), timeout=60)
            md = await eventually(lambda: (m := cluster.md())["status"].get("observedGeneration") == patched[
                "metadata"]["generation"] and m, timeout=30)
            assert_observed_generation(md)
            fleet.set_demand(800)
            turned_off = datetime.datetime.now(datetime.timezone.utc)
            generation = (await asyncio.to_thread(cluster.deployment)).metadata.generation

            def left_alone() -> None:
                deployment = cluster.deployment()
                assert deployment.spec.replicas == 2, f"Deployment scaled to {deployment.spec.replicas}"
                assert deployment.metadata.generation == generation, "the Deployment's spec was written"
            # The 5 s rate window shows the new demand well within these eight control intervals.
            await keeps(left_alone, seconds=8 * INTERVAL)
            for reason in ("ScaledUp", "ScaledDown"):
                assert not await asyncio.to_thread(events_since, reason, turned_off), reason
            assert_observed_generation(await asyncio.to_thread(cluster.md))
