"""Reading back what a field manager applied (managedFields → object), and the "nothing to apply" decision.

Covers: fields, keyed list items (`k:`), set items (`v:`) and atomic values are extracted from the live object in
its order, and fields owned by other managers (a user's annotation, the server's defaults) are not; the decision
is "up to date" only when the manager owns exactly the desired fields with the desired values: a removed field, a
changed value, a field taken over by a hand edit, a missing Apply entry each mean "apply"; numbers compare by value
and nulls / empty lists are what the server drops.
"""

from __future__ import annotations

import copy
from typing import Any

from neuroscale.k8s.ssa import applied_by, normalized, up_to_date

DESIRED: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "llama", "namespace": "ns", "labels": {"app": "llama"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "llama"}},
        "template": {"spec": {
            "nodeSelector": {"node.kubernetes.io/instance-type": "inf2.xlarge"},
            "containers": [{"name": "engine", "image": "vllm:1", "args": ["--port", "8000"],
                            "ports": [{"containerPort": 8000, "name": "http"}]}],
        }},
    },
}

OURS = {
    "f:metadata": {"f:labels": {"f:app": {}}},
    "f:spec": {
        "f:replicas": {},
        "f:selector": {},
        "f:template": {"f:spec": {
            "f:nodeSelector": {"f:node.kubernetes.io/instance-type": {}},
            "f:containers": {'k:{"name":"engine"}': {
                ".": {}, "f:name": {}, "f:image": {}, "f:args": {},
                "f:ports": {'k:{"containerPort":8000,"protocol":"TCP"}': {".": {}, "f:containerPort": {}, "f:name": {}}},
            }},
        }},
    },
}


def live(fields: dict[str, Any] = OURS, manager: str = "neuroscale", operation: str = "Apply") -> dict[str, Any]:
    """The object as the server holds it: our fields, server defaults, a user's annotation, managedFields."""
    obj = copy.deepcopy(DESIRED)
    obj["metadata"].update({"uid": "u", "resourceVersion": "7", "annotations": {"team": "search"}, "managedFields": [
        {"manager": manager, "operation": operation, "apiVersion": "apps/v1", "fieldsType": "FieldsV1",
         "fieldsV1": fields},
        {"manager": "kubectl-annotate", "operation": "Update", "fieldsV1": {"f:metadata": {"f:annotations": {"f:team": {}}}}},
    ]})
    obj["spec"]["strategy"] = {"type": "RollingUpdate"}  # a server default nobody applied
    container = obj["spec"]["template"]["spec"]["containers"][0]
    container["terminationMessagePath"] = "/dev/termination-log"
    container["ports"][0]["protocol"] = "TCP"
    obj["spec"]["template"]["spec"]["containers"].insert(0, {"name": "sidecar", "image": "injected"})
    obj["status"] = {"replicas": 2}
    return obj


def test_extracts_exactly_the_managers_fields() -> None:
    assert normalized(applied_by(live())) == normalized(DESIRED)


def test_a_settled_object_is_up_to_date() -> None:
    assert up_to_date(live(), DESIRED)


def test_a_field_removed_from_the_desired_object_means_apply() -> None:
    desired = copy.deepcopy(DESIRED)
    del desired["spec"]["template"]["spec"]["nodeSelector"]
    assert not up_to_date(live(), desired)


def test_a_changed_value_or_a_new_field_means_apply() -> None:
    changed = copy.deepcopy(DESIRED)
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "vllm:2"
    added = copy.deepcopy(DESIRED)
    added["spec"]["template"]["spec"]["tolerations"] = [{"key": "aws.amazon.com/neuron", "operator": "Exists"}]
    assert not up_to_date(live(), changed)
    assert not up_to_date(live(), added)


def test_a_field_taken_over_by_a_hand_edit_means_apply() -> None:
    fields = copy.deepcopy(OURS)
    del fields["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"engine"}']["f:image"]
    edited = live(fields)
    edited["spec"]["template"]["spec"]["containers"][1]["image"] = "hacked"
    assert not up_to_date(edited, DESIRED)


def test_no_apply_entry_of_ours_means_apply() -> None:
    assert not up_to_date(live(operation="Update"), DESIRED)
    assert not up_to_date(live(manager="someone-else"), DESIRED)
    assert not up_to_date(None, DESIRED)


def test_set_items_and_indices_are_extracted_in_live_order() -> None:
    obj = {"metadata": {"name": "x", "finalizers": ["a", "b", "c"], "managedFields": [
        {"manager": "neuroscale", "operation": "Apply", "fieldsV1": {"f:metadata": {"f:finalizers": {
            'v:"c"': {}, 'v:"a"': {}}}}}]}}
    assert applied_by(obj)["metadata"]["finalizers"] == ["a", "c"]


def test_numbers_compare_by_value_and_dropped_values_do_not_count() -> None:
    assert normalized({"a": 1.0, "b": None, "c": [], "d": [{"e": 2.5}]}) == {"a": 1, "d": [{"e": 2.5}]}
