"""What the autoscaler's step (controllers/autoscaling.py) derives from the spec and a reading before the policy.

Covers: served work = generated tokens/s + prompt tokens/s at the sizing model's prefill cost, generated alone where
prompts are not reported, none without a generated rate; the replica model from one sizing (the recorded decode
rate and the prefill rate from the sizing's own estimate, prefill counted once; a spec that no longer sizes keeps the recorded rate and costs no
prompts, and with nothing recorded the sizing error surfaces); the queue budget of a TTFT SLO less the prefill of
the spec's mean prompt (or sizing's default prompt); a TTFT that prefill alone exceeds named in the Autoscaling
condition while the step still runs.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import pytest

from neuroscale import reasons as R
from neuroscale.api.modeldeployment import ModelDeploymentSpec
from neuroscale.autoscale.capacity import ReplicaModel, replica_model_from_sizing
from neuroscale.autoscale.metrics import MetricsReading
from neuroscale.autoscale.slo import DEFAULT_QUEUE_WAIT_S, MIN_QUEUE_WAIT_S
from neuroscale.controllers.autoscaling import Memory, queue_budget, replica_model, served_work, step
from neuroscale.render.modeldeployment import sizing_request
from neuroscale.sizing import SizingError, size
from tests.support.factories import make_model_deployment
from tests.unit.test_security_messages import Events, FakeKube, condition

REPLICA = ReplicaModel(decode_tokens_per_s=400.0, prefill_tokens_per_s=8000.0)  # a prompt token costs 0.05


def spec_of(**overrides: Any) -> ModelDeploymentSpec:
    return ModelDeploymentSpec.model_validate(make_model_deployment(**overrides)["spec"])


def reading(tokens: float | None, prompt: float | None) -> MetricsReading:
    return MetricsReading(at=0.0, tokens_per_second=tokens, queue_depth=0.0, ready_pods_reporting=1,
                          prompt_tokens_per_second=prompt)


def test_served_work_counts_prompts_at_their_prefill_cost() -> None:
    assert served_work(reading(100.0, 2000.0), REPLICA) == pytest.approx(100.0 + 2000.0 * 0.05)
    assert served_work(reading(100.0, None), REPLICA) == 100.0
    assert served_work(reading(None, 2000.0), REPLICA) is None


def test_the_replica_model_is_one_sizing_and_counts_prefill_once() -> None:
    spec = spec_of()
    result = size(sizing_request(spec))
    sized = replica_model_from_sizing(result, spec.batching.max_num_seqs)
    assert replica_model(spec, {}) == sized
    # The recorded figure (the mix rate, prefill included) does not replace the decode rate: that counted prefill twice.
    assert replica_model(spec, {"sizing": {"estimatedTokensPerSecond": 123.0}}) == sized
    assert math.isfinite(sized.prefill_tokens_per_s) and sized.prefill_cost > 0
    # At the sized request mix, one replica-second of work is exactly the sized generated tokens/s.
    mix = result.throughput
    per_request = sized.work(mix.output_tokens, mix.prompt_tokens)
    assert sized.decode_tokens_per_s / per_request * mix.output_tokens == pytest.approx(result.tokens_per_second)


def test_a_spec_that_no_longer_sizes_keeps_the_recorded_rate_and_costs_no_prompts() -> None:
    spec = spec_of(model={"source": "hf://meta-llama/Llama-3.1-405B-Instruct"},
                   accelerator={"instanceType": "inf2.xlarge"})
    kept = replica_model(spec, {"sizing": {"estimatedTokensPerSecond": 300.0}})
    assert (kept.decode_tokens_per_s, kept.prefill_cost) == (300.0, 0.0)
    with pytest.raises(SizingError):
        replica_model(spec, {})


def test_a_ttft_slo_leaves_the_queue_what_the_mean_prompt_does_not_take() -> None:
    spec = spec_of(batching={"meanPromptTokens": 4000}, autoscaling={"slo": {"timeToFirstTokenSeconds": 2.0}})
    budget = queue_budget(spec, REPLICA)
    assert budget.prefill_s == pytest.approx(0.5)
    assert budget.seconds == pytest.approx(1.5)
    # Without meanPromptTokens the prompt sizing assumes (1024 tokens for a 4096-token model).
    default = queue_budget(spec_of(autoscaling={"slo": {"timeToFirstTokenSeconds": 2.0}}), REPLICA)
    assert default.prefill_s == pytest.approx(1024 / 8000.0)
    assert queue_budget(spec_of(autoscaling={"slo": {"queueWaitSeconds": 3.0}}), REPLICA).seconds == 3.0
    assert queue_budget(spec_of(autoscaling={}), REPLICA).seconds == DEFAULT_QUEUE_WAIT_S


def test_a_ttft_that_prefill_alone_exceeds_is_named_in_the_condition() -> None:
    body = make_model_deployment(batching={"meanPromptTokens": 16000}, model={"maxModelLen": 32768},
                                 autoscaling={"minReplicas": 1, "maxReplicas": 4,
                                              "slo": {"timeToFirstTokenSeconds": 0.2}})
    spec = ModelDeploymentSpec.model_validate(body["spec"])
    assert queue_budget(spec, replica_model(spec, {})).seconds == MIN_QUEUE_WAIT_S
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "llama", "namespace": "ns1"},
                  "spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 2}}
    kube = FakeKube(body, deployment)

    outcome = step(body, kube, None, Memory(), now=1_700_000_000.0, clock=datetime(2025, 6, 1, tzinfo=timezone.utc),
                   interval_s=15.0, emit=Events())

    assert outcome is not None and outcome.replicas == 2, "replicas held, no crash"
    autoscaling = condition(kube.get("neuroscale.io/v1alpha1", "ModelDeployment", "ns1", "llama"), R.AUTOSCALING)
    assert autoscaling["reason"] == R.METRICS_UNAVAILABLE
    assert "no Prometheus URL configured" in autoscaling["message"]
    assert "timeToFirstTokenSeconds 0.2 leaves no queue wait: a 16000-token prompt" in autoscaling["message"]
