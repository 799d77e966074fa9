"""Turn pydantic models into Kubernetes structural OpenAPI v3 schemas (the CRD's single source of truth)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

# JSON-Schema keywords a structural schema accepts; everything else pydantic emits (title, $defs, ...) is dropped.
_KEPT = {
    "type", "format", "description", "default", "enum", "minimum", "maximum", "exclusiveMinimum",
    "exclusiveMaximum", "minLength", "maxLength", "pattern", "minItems", "maxItems", "uniqueItems",
    "minProperties", "maxProperties", "required", "items", "properties", "additionalProperties", "nullable",
}


class ApiModel(BaseModel):
    """Base for every API type: camelCase on the wire, unknown fields rejected, values immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        use_enum_values=True,
        # Types as the CRD's schema has them: "2" is not an integer, nor "true" a boolean (an int is a number).
        strict=True,
    )

    def to_wire(self) -> dict[str, Any]:
        """The object as the API server stores it: camelCase, defaults omitted where unset."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


@dataclass(frozen=True)
class Rule:
    """One CRD validation rule: the CEL the API server runs and the message both it and the model give.

    A model carries its rules in the CRD (`crd_rules`) and checks each in a validator that raises `refused()`,
    so an object the API server never checked (an older CRD, a direct etcd write) meets the same rule, worded the
    same (tests/unit/test_api_parity.py holds every rule of the CRDs to that).
    """

    rule: str
    message: str

    def refused(self) -> PydanticCustomError:
        return refused(self.message, "crd_rule")


def refused(message: str, kind: str = "invalid") -> PydanticCustomError:
    """A validator's error whose message is exactly `message` (no "Value error, " before it, no formatting)."""
    return PydanticCustomError(kind, "{message}", {"message": message})


def crd_rules(*rules: Rule) -> ConfigDict:
    """ApiModel's config with these rules as the schema's `x-kubernetes-validations`."""
    return ApiModel.model_config | {  # type: ignore[return-value]
        "json_schema_extra": {"x-kubernetes-validations": [{"rule": r.rule, "message": r.message} for r in rules]}
    }


class ObjectProblem(ValidationError):
    """What is wrong with an object outside its spec (its name, which names its children), as a ValidationError.

    Everything that reports an invalid spec reports it the same way (`InvalidSpec`, never as a sizing failure), and
    `describe` gives its own path, e.g. `metadata.name: ...`. `str()` is that line too, for callers that catch
    ValueError.
    """

    @classmethod
    def at(cls, path: tuple[str, ...], kind: str, message: str, value: Any = None) -> ObjectProblem:
        error = {"type": refused(message, "invalid_object"), "loc": path, "input": value}
        return cls.from_exception_data(kind, [error])  # type: ignore[list-item]

    def __str__(self) -> str:
        return describe(self)


def structural_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema rewritten into a Kubernetes structural schema.

    `$ref`s are inlined (structural schemas forbid them), `Optional[X]` becomes `X` (absent means unset),
    `x-kubernetes-*` extensions given through `json_schema_extra` are kept, and pydantic's titles are dropped.
    """
    raw = model.model_json_schema(by_alias=True, mode="validation", ref_template="#/$defs/{model}")
    defs = raw.pop("$defs", {})
    return _convert(raw, defs)


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _convert(merged, defs)
    if "anyOf" in node:
        node = _collapse_optional(node)
        if "anyOf" in node:
            raise TypeError(f"structural schemas cannot express the union {node['anyOf']!r}")
        return _convert(node, defs)
    if "allOf" in node and len(node["allOf"]) == 1:
        merged = {**node["allOf"][0], **{k: v for k, v in node.items() if k != "allOf"}}
        return _convert(merged, defs)
    if "const" in node:
        node = {**{k: v for k, v in node.items() if k != "const"}, "enum": [node["const"]]}

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-"):
            out[key] = value
        elif key not in _KEPT:
            continue
        elif key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key in ("items",) or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = _convert(value, defs)
        elif key == "required":
            out[key] = sorted(value)
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # OpenAPI v3.0 (what Kubernetes speaks) spells an exclusive bound as a boolean beside the bound.
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "additionalProperties" and value is False:
            continue  # unknown fields are pruned by the API server; `false` is not allowed beside `properties`
        elif key == "additionalProperties" and value is True:
            out["x-kubernetes-preserve-unknown-fields"] = True  # the structural way to say "any keys"
        else:
            out[key] = value
    if out.get("default") is None:
        out.pop("default", None)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _collapse_optional(node: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, {type: null}]` → X with the outer description/default; anything else is left for the caller."""
    options = [o for o in node["anyOf"] if o.get("type") != "null"]
    if len(options) != 1:
        return node
    rest = {k: v for k, v in node.items() if k != "anyOf"}
    return {**options[0], **rest}


def describe(error: ValidationError, prefix: str = "spec") -> str:
    """One line per problem, with the wire (camelCase) path, e.g. `spec.model.maxModelLen: ...`.

    An ObjectProblem's path is the object's own (e.g. `metadata.name`), not under `prefix`.
    """
    lines = []
    absolute = isinstance(error, ObjectProblem)
    for problem in error.errors():
        steps = (to_camel(p) if isinstance(p, str) else f"[{p}]" for p in problem["loc"])
        path = ".".join([*(() if absolute else (prefix,)), *steps])
        lines.append(f"{path.replace('.[', '[')}: {problem['msg']}")
    return "; ".join(lines)
