"""Objects the CRD schema would refuse but that reach the operator anyway (an older CRD, a direct etcd write).

Covers: a non-object `spec.autoscaling` (a string, a list, null) neither raises in the autoscaler's index filter nor
enrols the object for autoscaling; the autoscaler's periodic step on such an object returns quietly (no traceback
every interval: the reconcile reports the invalid spec); the reconcile reports it as Sized=False / InvalidSpec with
the field named, writes its status, and creates no children; minReplicas above maxReplicas is refused by the model
as the CRD refuses it, and nothing is scaled; a spec only the renderer refuses (a literal HF_TOKEN) is InvalidSpec
too, without echoing the secret — SizingFailed is kept for a model that fits nowhere.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf
import pytest

from neuroscale.handlers import autoscaling as handler
from neuroscale.runtime import OperatorConfig, Runtime
from tests.support.factories import make_model_deployment
from tests.unit.test_security_messages import FakeKube, condition, reconcile, stored

BROKEN = ["fast please", [1, 2], 7, None]


@pytest.mark.parametrize("scaling", BROKEN, ids=repr)
def test_a_non_object_autoscaling_is_not_enrolled_and_does_not_raise(scaling: Any) -> None:
    assert handler._enabled({"autoscaling": scaling}) is False


def test_only_an_enabled_autoscaling_object_is_enrolled() -> None:
    assert handler._enabled({"autoscaling": {"minReplicas": 1}}) is True
    assert handler._enabled({"autoscaling": {"enabled": False}}) is False
    assert handler._enabled({}) is False


@pytest.mark.parametrize("scaling", BROKEN[:3], ids=repr)
def test_the_autoscaler_step_returns_quietly_on_a_spec_the_schema_never_checked(
    scaling: Any, caplog: pytest.LogCaptureFixture,
) -> None:
    body = make_model_deployment(autoscaling=scaling)
    kube = FakeKube(body)
    runtime = Runtime(kube=kube, config=OperatorConfig())  # type: ignore[arg-type]
    caplog.set_level(logging.DEBUG)
    handler.autoscale(body["metadata"]["namespace"], body["metadata"]["name"], kopf.Memo(runtime=runtime))
    assert not [r for r in caplog.records if r.exc_info], "a traceback every interval"
    assert not kube.of_kind("Deployment")


@pytest.mark.parametrize("scaling", BROKEN[:3], ids=repr)
def test_the_reconcile_reports_a_non_object_autoscaling_as_an_invalid_spec(scaling: Any) -> None:
    md, kube, events = reconcile(make_model_deployment(autoscaling=scaling))
    sized = condition(md, "Sized")
    assert (sized["status"], sized["reason"]) == ("False", "InvalidSpec")
    assert "autoscaling" in sized["message"]
    assert not kube.of_kind("Deployment")
    assert any(e[1] == "InvalidSpec" for e in events)


def test_min_above_max_is_refused_by_the_model_and_nothing_is_scaled() -> None:
    body = make_model_deployment(autoscaling={"minReplicas": 5, "maxReplicas": 2, "targetTokensPerSecond": 100})
    md, kube, _ = reconcile(body)
    sized = condition(md, "Sized")
    assert sized["status"] == "False" and "minReplicas must not exceed maxReplicas" in sized["message"]
    assert not kube.of_kind("Deployment")
    assert stored(kube, body)["status"]["observedGeneration"] == 1


def test_a_spec_the_renderer_refuses_is_an_invalid_spec_not_a_sizing_failure() -> None:
    body = make_model_deployment(engine={"name": "vllm", "env": [{"name": "HF_TOKEN", "value": "hf_plaintext"}]})
    md, kube, events = reconcile(body)
    sized = condition(md, "Sized")
    assert (sized["status"], sized["reason"]) == ("False", "InvalidSpec")
    assert "HF_TOKEN" in sized["message"] and "hf_plaintext" not in sized["message"]
    assert not kube.of_kind("Deployment")
