"""RBAC checks against the chart's rendered roles: does a rule list grant (group, resource, verb[, subresource])?

`rendered_rules(values)` renders the chart with real Helm (see tests.support.helm_chart) and returns the rules
of every ClusterRole and Role in it; `rules_allow(rules, ...)` answers as the API server's RBAC authorizer would
for a request without a resourceName (rules restricted by resourceNames do not grant such requests).
"""

from __future__ import annotations

from typing import Any

from tests.support.helm_chart import render

ROLE_KINDS = ("ClusterRole", "Role")


def _matches(allowed: list[str], wanted: str) -> bool:
    return "*" in allowed or wanted in allowed


def rules_allow(rules: list[dict[str, Any]], group: str, resource: str, verb: str, subresource: str | None = None) -> bool:
    """True when some rule grants `verb` on `resource` (or `resource/subresource`) in API group `group`."""
    target = f"{resource}/{subresource}" if subresource else resource
    for rule in rules:
        if rule.get("resourceNames"):
            continue
        resources = rule.get("resources") or []
        resource_ok = target in resources or "*" in resources or (subresource is not None and f"*/{subresource}" in resources)
        if resource_ok and _matches(rule.get("apiGroups") or [], group) and _matches(rule.get("verbs") or [], verb):
            return True
    return False


def roles(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [obj for obj in objects if obj.get("kind") in ROLE_KINDS]


def rendered_rules(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every rule of every ClusterRole and Role the chart renders with `values` (Helm's own rendering)."""
    return [rule for role in roles(render(values).objects) for rule in role.get("rules") or []]
