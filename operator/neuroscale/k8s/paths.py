"""REST paths of the kinds the operator reads and writes (pure)."""

from __future__ import annotations

from urllib.parse import quote

# Plurals that are not simply the lower-cased kind + "s".
_IRREGULAR_PLURALS = {"Endpoints": "endpoints", "NetworkPolicy": "networkpolicies"}


def plural(kind: str) -> str:
    return _IRREGULAR_PLURALS.get(kind, kind.lower() + "s")


def collection_path(api_version: str, kind: str, namespace: str | None) -> str:
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    scope = f"/namespaces/{quote(namespace, safe='')}" if namespace else ""
    return f"{base}{scope}/{plural(kind)}"


def object_path(api_version: str, kind: str, namespace: str | None, name: str, subresource: str | None = None) -> str:
    path = f"{collection_path(api_version, kind, namespace)}/{quote(name, safe='')}"
    return f"{path}/{subresource}" if subresource else path
