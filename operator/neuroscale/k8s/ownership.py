"""Ownership of children (pure): the owner reference every child carries, and adopting a rendered child."""

from __future__ import annotations

from typing import Any


def owner_reference(owner: dict[str, Any]) -> dict[str, Any]:
    """The ownerReference a child carries so deletion cascades and `kubectl` shows who made it."""
    meta = owner["metadata"]
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def adopt(child: dict[str, Any], owner: dict[str, Any]) -> dict[str, Any]:
    """A copy of `child` owned by `owner`, in the owner's namespace."""
    meta = dict(child.get("metadata", {}))
    meta["namespace"] = owner["metadata"]["namespace"]
    meta["ownerReferences"] = [owner_reference(owner)]
    return {**child, "metadata": meta}
