"""Decide whether a live object already carries what we want, and build the patch that makes it so (pure)."""

from __future__ import annotations

from typing import Any


def contains(actual: Any, desired: Any) -> bool:
    """True when every field we set in `desired` has the same value in `actual`.

    Fields the API server or other controllers add (defaults, status, foreign annotations) are ignored, so a
    resync finds nothing to do. Lists must match element by element, in order and length: we own whole lists
    (containers, ports), so an extra or missing element is drift.
    """
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return False
        return all(key in actual and contains(actual[key], value) for key, value in desired.items())
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(actual) != len(desired):
            return False
        return all(contains(a, d) for a, d in zip(actual, desired))
    if isinstance(desired, bool) or isinstance(actual, bool):
        return desired is actual
    if isinstance(desired, (int, float)) and isinstance(actual, (int, float)):
        return float(desired) == float(actual)
    return actual == desired


def merge_patch(desired: dict[str, Any]) -> dict[str, Any]:
    """A JSON merge patch (RFC 7386) that makes the live object carry `desired`.

    Only the fields we own are sent; status and server-managed metadata never are.
    """
    meta = desired.get("metadata", {})
    patch: dict[str, Any] = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind", "metadata", "status")}
    owned_meta = {k: meta[k] for k in ("labels", "annotations", "ownerReferences") if k in meta}
    if owned_meta:
        patch["metadata"] = owned_meta
    return patch


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
