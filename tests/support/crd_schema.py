"""A CRD's structural schema used the way the API server uses it: defaulting, schema validation and CEL rules.

The API server's order for a write is: prune unknown fields and non-nullable nulls, apply `default`s, validate the
OpenAPI v3.0 schema, then evaluate every `x-kubernetes-validations` rule with `self` bound to the value at the
rule's location (a rule on an optional field runs only where that field is present). Unknown fields are pruned,
not rejected, so nothing here reports them. jsonschema does the schema checks once the OpenAPI v3.0 dialect is
rewritten into JSON Schema 2020-12; cel-python (`celpy`) evaluates the rules.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import celpy
import jsonschema
from celpy import celtypes

# Replaced by the API server with TypeMeta/ObjectMeta (and their descriptions) in the OpenAPI it publishes.
SERVER_SUPPLIED_ROOT_FIELDS = ("apiVersion", "kind", "metadata")
OBJECT_META_FIELDS = frozenset({
    "name", "generateName", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences", "finalizers",
    "managedFields",
})


def openapi_schema(crd: dict[str, Any], version: str | None = None) -> dict[str, Any]:
    """The `openAPIV3Schema` of one version of a CRD manifest (the storage version when none is named)."""
    versions = crd["spec"]["versions"]
    chosen = next(v for v in versions if (v["name"] == version if version else v.get("storage")))
    return chosen["schema"]["openAPIV3Schema"]


def to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """Rewrite an OpenAPI v3.0 structural schema into JSON Schema 2020-12 with the same meaning.

    `nullable: true` adds "null" to the type; a boolean `exclusiveMinimum`/`exclusiveMaximum` turns its bound
    exclusive; `x-kubernetes-int-or-string` allows an integer or a string; other `x-kubernetes-*` keys only steer
    pruning, list merging and CEL, so they are dropped.
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key.startswith("x-kubernetes-") or key in ("nullable", "exclusiveMinimum", "exclusiveMaximum"):
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "not") or (key == "additionalProperties" and isinstance(value, dict)):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(sub) for sub in value]
        else:
            out[key] = copy.deepcopy(value)
    for bound, exclusive in (("minimum", "exclusiveMinimum"), ("maximum", "exclusiveMaximum")):
        if node.get(exclusive) is True:
            out[exclusive] = out.pop(bound)
    if node.get("x-kubernetes-int-or-string"):
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


class CrdSchema:
    """One version's schema with its JSON Schema validator built once: errors, defaults, CEL verdicts."""

    def __init__(self, openapi: dict[str, Any]) -> None:
        self.openapi = openapi
        self._validator = jsonschema.Draft202012Validator(
            to_json_schema(openapi), format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )

    def errors(self, obj: Any) -> list[str]:
        """Every way `obj` breaks the schema, as `path: message` lines; empty when it conforms."""
        found = sorted(self._validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
        return [f"{_dotted(error.absolute_path)}: {error.message}" for error in found]

    def defaulted(self, obj: Any) -> Any:
        return apply_defaults(self.openapi, obj)

    def rules(self) -> list[CelRule]:
        return cel_rules(self.openapi)

    def violations(self, obj: Any) -> list[CelViolation]:
        return cel_violations(self.openapi, obj)

    def duplicates(self, obj: Any) -> list[str]:
        """List-map items sharing their keys, and repeated list-set items: the API server refuses both."""
        found = []
        for value, schema, at in _walk(obj, self.openapi, ""):
            list_type = schema.get("x-kubernetes-list-type")
            if not isinstance(value, list) or list_type not in ("map", "set"):
                continue
            keys = schema.get("x-kubernetes-list-map-keys", [])
            seen: list[Any] = []
            for index, item in enumerate(value):
                key = [item.get(k) for k in keys] if list_type == "map" and isinstance(item, dict) else item
                if key in seen:
                    found.append(f"{at}[{index}]: Duplicate value: {key!r}")
                seen.append(key)
        return found

    def rejections(self, obj: Any) -> list[str]:
        """Why the API server would refuse a write of `obj`: schema errors, duplicate list keys, then CEL messages
        (empty = admitted)."""
        defaulted = self.defaulted(obj)
        return self.errors(defaulted) + self.duplicates(defaulted) + [
            f"{v.at}: {v.rule.message}{' (' + v.detail + ')' if v.detail else ''}" for v in self.violations(obj)]


def apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """A copy of `obj` with the schema's defaults applied as the API server's structural defaulting does.

    Per object: an absent property, or a null one its schema does not mark nullable, takes a deep copy of the
    property's `default`; then every present value (defaults included) is defaulted against its own schema.
    Arrays default each item; maps default each value against `additionalProperties`.
    """
    obj = copy.deepcopy(obj)
    _default(obj, schema)
    return obj


def _default(value: Any, schema: dict[str, Any] | None) -> None:
    if not schema:
        return
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        for name, prop in properties.items():
            if "default" not in prop:
                continue
            if name not in value or (value[name] is None and not prop.get("nullable")):
                value[name] = copy.deepcopy(prop["default"])
        extra = schema.get("additionalProperties")
        for name, sub in value.items():
            if name in properties:
                _default(sub, properties[name])
            elif isinstance(extra, dict):
                _default(sub, extra)
    elif isinstance(value, list):
        for item in value:
            _default(item, schema.get("items"))


@dataclass(frozen=True)
class CelRule:
    """One `x-kubernetes-validations` entry and where in the schema it sits (`[]` steps into list items)."""

    path: tuple[str, ...]
    rule: str
    message: str

    @property
    def location(self) -> str:
        return ".".join(self.path).replace(".[]", "[]") or "<root>"


@dataclass(frozen=True)
class CelViolation:
    """A rule that evaluated to false (or failed to evaluate) at a concrete place in an object."""

    rule: CelRule
    at: str
    detail: str = ""


def cel_rules(schema: dict[str, Any], path: tuple[str, ...] = ()) -> list[CelRule]:
    """Every CEL rule in the schema, outermost first."""
    found = [CelRule(path, v["rule"], v.get("message", v["rule"])) for v in schema.get("x-kubernetes-validations", [])]
    for name, sub in schema.get("properties", {}).items():
        found += cel_rules(sub, (*path, name))
    if isinstance(schema.get("items"), dict):
        found += cel_rules(schema["items"], (*path, "[]"))
    if isinstance(schema.get("additionalProperties"), dict):
        found += cel_rules(schema["additionalProperties"], (*path, "{}"))
    return found


@lru_cache(maxsize=256)
def _program(rule: str) -> celpy.Runner:
    env = celpy.Environment()
    return env.program(env.compile(rule))


def evaluate_rule(rule: str, value: Any, schema: dict[str, Any]) -> bool:
    """The rule's verdict with `self` bound to `value` typed by `schema`; an evaluation error is an exception."""
    result = _program(rule).evaluate({"self": to_cel(value, schema)})
    if isinstance(result, celpy.CELEvalError):
        raise result
    return bool(result)


def cel_violations(schema: dict[str, Any], obj: Any) -> list[CelViolation]:
    """Every rule that rejects `obj` after defaulting, evaluated at every place its location exists in `obj`."""
    defaulted = apply_defaults(schema, obj)
    violations = []
    for value, node, at in _walk(defaulted, schema, ""):
        for entry in node.get("x-kubernetes-validations", []):
            rule = CelRule(_schema_path(at), entry["rule"], entry.get("message", entry["rule"]))
            try:
                if not evaluate_rule(entry["rule"], value, node):
                    violations.append(CelViolation(rule, at or "<root>"))
            except celpy.CELEvalError as error:
                violations.append(CelViolation(rule, at or "<root>", f"evaluation error: {error.args[0]}"))
    return violations


def _walk(value: Any, schema: dict[str, Any], at: str) -> Iterator[tuple[Any, dict[str, Any], str]]:
    yield value, schema, at
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        for name, sub in value.items():
            if name in properties:
                yield from _walk(sub, properties[name], f"{at}.{name}" if at else name)
            elif isinstance(extra, dict):
                yield from _walk(sub, extra, f"{at}[{name!r}]")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            yield from _walk(item, schema["items"], f"{at}[{index}]")


def _schema_path(at: str) -> tuple[str, ...]:
    steps = re.sub(r"\[\d+\]", ".[]", re.sub(r"\['[^']*'\]", ".{}", at))
    return tuple(step for step in steps.split(".") if step)


def to_cel(value: Any, schema: dict[str, Any] | None) -> Any:
    """`value` as the CEL value the API server binds: typed by the schema (a `number` is a double even if whole)."""
    schema = schema or {}
    kind = schema.get("type")
    if value is None:
        return None
    if isinstance(value, dict):
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties") if isinstance(schema.get("additionalProperties"), dict) else None
        return celtypes.MapType({
            celtypes.StringType(k): to_cel(v, properties.get(k, extra)) for k, v in value.items()
        })
    if isinstance(value, list):
        return celtypes.ListType([to_cel(item, schema.get("items")) for item in value])
    if kind == "number" and not isinstance(value, bool):
        return celtypes.DoubleType(value)
    return celpy.json_to_cel(value)


def properties_without_description(schema: dict[str, Any], at: str = "") -> list[str]:
    """Dotted paths of properties that `kubectl explain` would show without a description."""
    missing = []
    for name, sub in schema.get("properties", {}).items():
        path = f"{at}.{name}" if at else name
        if not at and name in SERVER_SUPPLIED_ROOT_FIELDS:
            continue
        if not str(sub.get("description", "")).strip():
            missing.append(path)
        missing += properties_without_description(sub, path)
    if isinstance(schema.get("items"), dict):
        missing += properties_without_description(schema["items"], f"{at}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        missing += properties_without_description(schema["additionalProperties"], f"{at}{{}}")
    return missing


def schema_at(schema: dict[str, Any], json_path: str) -> dict[str, Any] | None:
    """The schema a simple JSONPath (`.a.b`, `.a[0].b`, `.a[*].b`, `.a[?(@.x=="y")].b`) selects; None if absent.

    `.metadata.<field>` resolves to a stand-in for the ObjectMeta field, which the API server always serves.
    """
    steps = re.findall(r"\.([A-Za-z0-9_$-]+)|(\[[^\]]*\])", json_path)
    if not steps or re.sub(r"\.[A-Za-z0-9_$-]+|\[[^\]]*\]", "", json_path):
        return None
    names = [name or "[]" for name, _ in steps]
    if names[0] == "metadata" and len(names) == 2:
        return {"type": "object"} if names[1] in OBJECT_META_FIELDS else None
    node: dict[str, Any] | None = schema
    for name in names:
        if node is None:
            return None
        if name == "[]":
            node = node.get("items") if node.get("type") == "array" else None
        elif name in node.get("properties", {}):
            node = node["properties"][name]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return node


def _dotted(path: Any) -> str:
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
    return text.lstrip(".") or "<root>"
