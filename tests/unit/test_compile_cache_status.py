"""status.compileCache, status.coldStart and the autoscaler's cold start (pure).

Covers: Miss → Compiling → Uploading → Ready as pods of the key start, become Ready and the marker appears; Hit when
the marker was there first; an S3 failure is state Unknown with a False CompileCache condition carrying the reason;
the transition time moves only when key or state change (a repeated check writes nothing); readySeconds is the
first Ready pod's creation → Ready; cold starts are measured once per pod, only for the current key, as the upper
median of the recent samples (one compile among restores does not move it); a new key starts over; the autoscaler
takes the spec's coldStartSeconds, else the measured one, else 600 (a cascade's wake settings: the declared one or
600); the status builder carries both and drops the condition when the spec drops its compile cache.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from neuroscale import reasons as R
from neuroscale.api.modeldeployment import AutoscalingSpec
from neuroscale.conditions import ConditionUpdate
from neuroscale.api.inferencecascade import InferenceCascadeSpec
from neuroscale.controllers.autoscaling import cold_start_seconds
from neuroscale.render.inferencecascade import resolve_tiers
from neuroscale.status.compile_cache import (
    RECENT_SAMPLES, MarkerCheck, cold_start_status, compile_cache_status, pod_starts,
)
from neuroscale.status.modeldeployment import Observed, model_deployment_status
from tests.support.factories import make_inference_cascade, make_model_deployment

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
URI = "s3://bucket/neuron/k1/"


def stamp(seconds: float) -> str:
    return (NOW + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, created: float, ready: float | None = None, key: str = "k1") -> dict[str, Any]:
    conditions = [{"type": "Ready", "status": "True" if ready is not None else "False",
                   "lastTransitionTime": stamp(ready if ready is not None else created)}]
    return {"metadata": {"name": name, "creationTimestamp": stamp(created),
                         "annotations": {"neuroscale.io/artifact-key": key}},
            "status": {"conditions": conditions}}


def step(previous: dict[str, Any] | None, found: bool | None, pods: list[dict[str, Any]], at: float = 0,
         ) -> tuple[dict[str, Any], ConditionUpdate]:
    check = MarkerCheck(found) if found is not None else MarkerCheck(None, R.S3_ACCESS_DENIED, "access denied")
    return compile_cache_status(previous, key="k1", uri=URI, check=check, starts=pod_starts(pods, "k1"),
                                now=NOW + timedelta(seconds=at))


def test_a_miss_goes_through_compiling_and_uploading_to_ready() -> None:
    status, condition = step(None, False, [])
    assert status["state"] == "Miss" and condition.status == "True" and condition.reason == R.ARTIFACTS_MISSING
    status, _ = step(status, False, [pod("a", 0)], at=10)
    assert status["state"] == "Compiling" and status["lastTransitionTime"] == stamp(10)
    status, _ = step(status, False, [pod("a", 0, ready=2400)], at=2400)
    assert status["state"] == "Uploading" and status["readySeconds"] == 2400
    status, condition = step(status, True, [pod("a", 0, ready=2400)], at=2700)
    assert status["state"] == "Ready" and condition.reason == R.ARTIFACTS_FOUND
    assert "uploaded by a replica of this ModelDeployment" in condition.message
    again, _ = step(status, True, [pod("a", 0, ready=2400), pod("b", 2800)], at=2900)
    assert again == status  # nothing new: no status write


def test_a_marker_found_first_is_a_hit() -> None:
    status, condition = step(None, True, [])
    assert status == {"key": "k1", "uri": URI, "state": "Hit", "lastTransitionTime": stamp(0)}
    assert condition.status == "True" and "new replicas restore them" in condition.message


def test_an_s3_failure_is_unknown_with_a_false_condition() -> None:
    status, condition = step(None, None, [])
    assert status["state"] == "Unknown"
    assert (condition.type, condition.status, condition.reason) == (R.COMPILE_CACHE, "False", R.S3_ACCESS_DENIED)
    assert URI in condition.message and "access denied" in condition.message


def test_a_new_key_starts_over() -> None:
    ready, _ = step(None, True, [])
    status, _ = compile_cache_status(ready, key="k2", uri="s3://bucket/neuron/k2/", check=MarkerCheck(False),
                                     starts=[], now=NOW)
    assert status["key"] == "k2" and status["state"] == "Miss"


def test_cold_starts_are_measured_once_per_pod_for_the_current_key_only() -> None:
    pods = [pod("compiled", 0, ready=2400), pod("other-key", 0, ready=30, key="k0"), pod("starting", 100)]
    first = cold_start_status(None, "k1", pod_starts(pods, "k1"))
    assert first == {"key": "k1", "seconds": 2400.0, "samples": 1, "recent": [{"pod": "compiled", "seconds": 2400.0}]}
    assert cold_start_status(first, "k1", pod_starts(pods, "k1")) is first  # nothing new: unchanged
    # Two restores after the compile: the upper median ignores the one compile.
    pods += [pod("r1", 3000, ready=3300), pod("r2", 3000, ready=3320)]
    later = cold_start_status(first, "k1", pod_starts(pods, "k1"))
    assert later["samples"] == 3 and later["seconds"] == 320.0
    assert [s["pod"] for s in later["recent"]] == ["compiled", "r1", "r2"]


def test_recent_samples_are_bounded_and_a_new_key_starts_over() -> None:
    pods = [pod(f"p{i}", i, ready=i + 100 + i) for i in range(RECENT_SAMPLES + 3)]
    status = cold_start_status(None, "k1", pod_starts(pods, "k1"))
    assert status["samples"] == RECENT_SAMPLES + 3 and len(status["recent"]) == RECENT_SAMPLES
    assert cold_start_status(status, "k2", []) is None
    fresh = cold_start_status(status, "k2", pod_starts([pod("n", 0, ready=50, key="k2")], "k2"))
    assert fresh["samples"] == 1 and fresh["seconds"] == 50.0


def test_the_autoscaler_takes_the_spec_then_the_measurement_then_the_default() -> None:
    measured = {"coldStart": {"key": "k1", "seconds": 420.0, "samples": 2, "recent": []}}
    assert cold_start_seconds(AutoscalingSpec(coldStartSeconds=90), measured) == 90.0
    assert cold_start_seconds(AutoscalingSpec(), measured) == 420.0
    assert cold_start_seconds(AutoscalingSpec(), {}) == 600.0


def test_the_status_carries_both_and_drops_the_condition_with_the_compile_cache() -> None:
    cache, condition = step(None, False, [])
    cold = {"key": "k1", "seconds": 60.0, "samples": 1, "recent": [{"pod": "a", "seconds": 60.0}]}
    deployment = {"status": {"replicas": 1, "readyReplicas": 1, "updatedReplicas": 1}}
    observed = Observed(1, deployment, sizing={"explanation": "x"}, compile_cache=cache,
                        compile_cache_condition=condition, cold_start=cold)
    status = model_deployment_status(None, observed, generation=1, now=NOW)
    assert status["compileCache"] == cache and status["coldStart"] == cold
    assert any(c["type"] == R.COMPILE_CACHE for c in status["conditions"])
    dropped = model_deployment_status(status, Observed(1, deployment, sizing={"explanation": "x"}),
                                      generation=2, now=NOW)
    assert "compileCache" not in dropped and dropped["coldStart"] == cold
    assert not any(c["type"] == R.COMPILE_CACHE for c in dropped["conditions"])


def test_a_cascade_wake_takes_the_declared_cold_start_not_the_measured_one() -> None:
    spec = InferenceCascadeSpec.model_validate(make_inference_cascade()["spec"])
    deployment = make_model_deployment("llama", "ml", autoscaling={"minReplicas": 0})
    deployment["status"] = {"coldStart": {"key": "k1", "seconds": 42.0, "samples": 3, "recent": []}}
    (small, _) = resolve_tiers(spec, "ml", {"llama": deployment})
    # Following every new sample would roll the gateways; they measure their own wakes.
    assert small.config["wake"]["cold_start_seconds"] == 600.0
