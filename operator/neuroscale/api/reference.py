"""The field reference in the README, generated from the same schema as the CRDs (so it cannot drift)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from neuroscale.api.crds import Kind
from neuroscale.api.schema import structural_schema


def _type(node: dict[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    kind = node.get("type", "object")
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_type(node['additionalProperties'])}"
    bounds = []
    if "minimum" in node:
        bounds.append(f"{'>' if node.get('exclusiveMinimum') else '≥'} {node['minimum']}")
    if "maximum" in node:
        bounds.append(f"≤ {node['maximum']}")
    return kind + (f" ({', '.join(bounds)})" if bounds else "")


def _rows(node: dict[str, Any], path: str, required: bool) -> Iterator[tuple[str, str, str, str]]:
    if path:
        default = json.dumps(node["default"]) if "default" in node and node["default"] != {} else ""
        name = f"`{path}`" + (" *(required)*" if required else "")
        yield name, _type(node), f"`{default}`" if default else "", node.get("description", "").replace("\n", " ")
    children = node.get("properties") or node.get("items", {}).get("properties") or {}
    prefix = f"{path}[]" if node.get("type") == "array" else path
    for key, child in children.items():
        yield from _rows(child, f"{prefix}.{key}" if prefix else key, key in node.get("required", ()))


def spec_reference(kind: Kind) -> str:
    """A Markdown table of every spec field: path, type and range, default, description."""
    lines = ["| field | type | default | description |", "|---|---|---|---|"]
    for row in _rows(structural_schema(kind.spec), "spec", True):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def marker(kind: Kind, edge: str) -> str:
    return f"<!-- generated:{kind.kind}-reference:{edge} -->"


def update_document(text: str, kinds: tuple[Kind, ...]) -> str:
    """Replace each kind's marked block in `text` with the freshly generated reference."""
    for kind in kinds:
        start, end = marker(kind, "start"), marker(kind, "end")
        if start in text and end in text:
            head, rest = text.split(start, 1)
            _, tail = rest.split(end, 1)
            text = f"{head}{start}\n{spec_reference(kind)}{end}{tail}"
    return text
