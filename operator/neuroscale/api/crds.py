"""CustomResourceDefinitions assembled from the API models: schema, printer columns, subresources, names."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from neuroscale.api.common import GROUP, VERSION
from neuroscale.api.schema import structural_schema


@dataclass(frozen=True)
class Kind:
    """Everything the CRD says about one kind besides its schema."""

    kind: str
    plural: str
    spec: type[BaseModel]
    status: type[BaseModel]
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ("neuroscale",)
    printer_columns: tuple[dict[str, Any], ...] = ()
    scale: dict[str, str] | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def name(self) -> str:
        return f"{self.plural}.{GROUP}"


def _column(name: str, path: str, type_: str = "string", priority: int = 0, description: str = "") -> dict[str, Any]:
    col = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        col["priority"] = priority
    if description:
        col["description"] = description
    return col


def ready_columns() -> tuple[dict[str, Any], ...]:
    """Status and Age columns every kind ends with."""
    return (
        _column("Status", ".status.conditions[?(@.type==\"Ready\")].reason", description="Reason of the Ready condition"),
        _column("Age", ".metadata.creationTimestamp", "date"),
    )


def crd(kind: Kind) -> dict[str, Any]:
    """The CustomResourceDefinition manifest for one kind."""
    spec_schema = structural_schema(kind.spec)
    status_schema = structural_schema(kind.status)
    subresources: dict[str, Any] = {"status": {}}
    if kind.scale:
        subresources["scale"] = kind.scale
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": kind.name, "labels": {"app.kubernetes.io/part-of": "neuroscale"}},
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": list(kind.categories),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": subresources,
                    "additionalPrinterColumns": list(kind.printer_columns) + list(ready_columns()),
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": kind.description,
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec_schema,
                                "status": status_schema,
                            },
                        }
                    },
                }
            ],
        },
    }
