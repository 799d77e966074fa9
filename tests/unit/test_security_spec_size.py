"""What kopf copies into an annotation must fit (issue "Hardening", item 9).

kopf keeps the last handled state of every object in the `neuroscale.io/last-handled-configuration` annotation
(operator/neuroscale/handlers/__init__.py configures it): the whole spec, plus the user's own labels and
annotations, JSON-encoded with non-ASCII characters escaped (up to 12 bytes for one character). The API server
refuses an object whose annotations total more than 256 KiB, and then kopf can never record that it handled it.

Covers: the worst case the generated schemas allow, computed field by field (`worst_case`), which shows that no
bound on the spec can keep that copy small: a nodeSelector key has no length bound a structural schema can state
(only CEL can), escaping multiplies every free-text character by up to 12, and users' own annotations are copied
as well; a concrete schema-valid ModelDeployment (64 environment variables of 4096 characters) that the API server
admits, whose last-handled state, as the operator's own configured kopf storage writes it, is a small digest.
"""

from __future__ import annotations

import json
from typing import Any

import kopf

from neuroscale.api.crds import crd
from neuroscale.api.registry import KINDS
from neuroscale.api.schema import structural_schema
from neuroscale.handlers import configure
from tests.support.crd_schema import CrdSchema, openapi_schema
from tests.support.factories import make_model_deployment

ANNOTATIONS_LIMIT = 256 * 1024  # the API server's bound on all of an object's annotations together (bytes)
# What the operator's own copy may take, leaving the rest for users' annotations (and kubectl's copy of them).
BUDGET = 64 * 1024
ESCAPED = 12  # json.dumps (ensure_ascii) writes one astral character as two \uXXXX escapes


def worst_case(node: dict[str, Any], per_char: int, at: str = "spec") -> tuple[int, list[str]]:
    """(most JSON bytes a value of this schema can take, paths with no bound). Patterned strings are counted at
    one byte a character (their patterns allow ASCII only), free text at `per_char`."""
    if "enum" in node:
        return max(len(json.dumps(v)) for v in node["enum"]), []
    kind = node.get("type")
    if kind == "string":
        if "maxLength" not in node:
            return 2, [at]
        return 2 + node["maxLength"] * (1 if "pattern" in node else per_char), []
    if kind in ("integer", "number"):
        return 24, []
    if kind == "boolean":
        return 5, []
    if kind == "array":
        item, unbounded = worst_case(node.get("items", {}), per_char, f"{at}[]")
        if "maxItems" not in node:
            unbounded.append(at)
        return 2 + node.get("maxItems", 0) * (item + 1), unbounded
    total, unbounded = 2, []
    for key, sub in (node.get("properties") or {}).items():
        size, more = worst_case(sub, per_char, f"{at}.{key}")
        total += len(key) + 4 + size
        unbounded += more
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        size, more = worst_case(extra, per_char, f"{at}{{}}")
        total += node.get("maxProperties", 0) * (size + 4)
        unbounded += [*more, f"{at} (keys)"]
    return total, unbounded


def test_no_bound_on_the_spec_alone_can_keep_kopfs_copy_small() -> None:
    sizes = {}
    for kind in KINDS:
        schema = structural_schema(kind.spec)
        ascii_bytes, unbounded = worst_case(schema, 1)
        escaped_bytes, _ = worst_case(schema, ESCAPED)
        sizes[kind.kind] = (ascii_bytes, escaped_bytes, unbounded)
    # The only unbounded strings are a map's keys and values (a nodeSelector): structural schemas cannot bound keys.
    assert sizes["ModelDeployment"][2] == ["spec.scheduling.nodeSelector{}", "spec.scheduling.nodeSelector (keys)"]
    assert sizes["InferenceCascade"][2] == sizes["CacheTier"][2] == []
    # Even in plain ASCII a ModelDeployment spec can be larger than all annotations together may be; escaped, an
    # InferenceCascade's is too (a CacheTier's stays small).
    assert sizes["ModelDeployment"][0] > ANNOTATIONS_LIMIT
    assert sizes["InferenceCascade"][1] > ANNOTATIONS_LIMIT
    assert sizes["CacheTier"][1] < BUDGET


def large_model_deployment() -> dict[str, Any]:
    env = [{"name": f"NEURON_SETTING_{i}", "value": "x" * 4096} for i in range(64)]
    return make_model_deployment(engine={"env": env, "args": [f"--flag-{i}={'y' * 1000}" for i in range(64)]})


def test_the_schema_admits_a_spec_larger_than_the_annotation_limit() -> None:
    obj = large_model_deployment()
    schema = CrdSchema(openapi_schema(crd(next(k for k in KINDS if k.kind == "ModelDeployment"))))
    assert schema.rejections(obj) == []
    assert len(json.dumps(obj["spec"])) > ANNOTATIONS_LIMIT


def test_kopfs_copy_of_a_schema_valid_object_fits_the_operators_share_of_annotations() -> None:
    settings = kopf.OperatorSettings()
    configure(settings)
    storage = settings.persistence.diffbase_storage
    body = kopf.Body(large_model_deployment())
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    written = {k: v for k, v in (patch.get("metadata", {}).get("annotations") or {}).items() if v is not None}
    size = sum(len(key.encode()) + len(value.encode()) for key, value in written.items())
    assert size <= BUDGET, f"{size} bytes of annotations for one object (all annotations may take {ANNOTATIONS_LIMIT})"
