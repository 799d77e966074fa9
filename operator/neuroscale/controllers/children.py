"""What every reconciler does the same way: apply owned children, delete them, write status, announce changes."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from neuroscale import reasons as R
from neuroscale.api.common import API_VERSION
from neuroscale.conditions import find
from neuroscale.k8s.client import UNREAD, KubeClient, KubeError
from neuroscale.k8s.ownership import adopt

log = logging.getLogger(__name__)

# (type, reason, message) → a Kubernetes Event on the reconciled resource.
EmitEvent = Callable[[str, str, str], None]


@dataclass(frozen=True)
class Outcome:
    """What one reconcile did: the test suite and the benchmark count writes with it."""

    applied: dict[str, str]
    status_written: bool
    error: str | None = None


def apply_children(
    owner: dict[str, Any], objects: list[dict], kube: KubeClient, emit: EmitEvent,
    known: Mapping[str, dict[str, Any] | None] | None = None,
) -> tuple[dict[str, str], str | None]:
    """Apply each child adopted by `owner`, in order; stop at the first failure and return it as a message.

    `known` holds children the caller has just read ("Kind/name" → object, or None when absent), so they are not
    read again.

    A child created after a reconcile that applied every child was deleted by someone: the Event says it was
    restored. Degraded is reported only after an apply, so its absence (first reconcile, or a spec that never
    worked) or an ApplyFailed reason (the last attempt failed part-way) makes it a creation.
    """
    applied: dict[str, str] = {}
    degraded = find((owner.get("status") or {}).get("conditions"), R.DEGRADED)
    restored = degraded is not None and degraded["reason"] != R.APPLY_FAILED
    owner_checked = False
    for child in objects:
        key = f"{child['kind']}/{child['metadata']['name']}"
        try:
            live = (known or {}).get(key, UNREAD)
            if live is UNREAD:
                live = kube.get(child["apiVersion"], child["kind"], child["metadata"].get("namespace"),
                                child["metadata"]["name"])
            if live is None and not owner_checked:
                # Creating: make sure the owner was not deleted since it was read, or this reconcile would bring
                # back children the deletion just removed (pods failing on a deleted ServiceAccount until the
                # garbage collector catches up).
                _check_owner_exists(owner, kube)
                owner_checked = True
            applied[key] = kube.apply(adopt(child, owner), live=live)
        except KubeError as exc:
            log.warning("Applying %s for %s/%s failed: %s", key, owner["metadata"]["namespace"],
                        owner["metadata"]["name"], exc)
            return applied, f"{key}: {exc}"
        if applied[key] == "created":
            emit("Normal", "Restored" if restored else "Created", f"{'Recreated' if restored else 'Created'} {key}")
        elif applied[key] == "patched":
            emit("Normal", "Updated", f"Brought {key} in line with the spec")
    return applied, None


class OwnerGone(Exception):
    """The owner was deleted while it was being reconciled: nothing more is created for it."""


def _check_owner_exists(owner: dict[str, Any], kube: KubeClient) -> None:
    meta = owner["metadata"]
    current = kube.get(owner["apiVersion"], owner["kind"], meta["namespace"], meta["name"])
    if current is None or current["metadata"].get("uid") != meta.get("uid") \
            or current["metadata"].get("deletionTimestamp"):
        raise OwnerGone(f"{owner['kind']} {meta['namespace']}/{meta['name']} was deleted")


def delete_children(owner: dict[str, Any], children: Iterable[tuple[str, str, str]], kube: KubeClient) -> list[str]:
    """Delete the named children that `owner` really owns (matching ownerReference uid); others are left alone."""
    meta = owner["metadata"]
    deleted = []
    for api_version, kind, name in children:
        child = kube.get(api_version, kind, meta["namespace"], name)
        owners = ((child or {}).get("metadata") or {}).get("ownerReferences") or ()
        if child is not None and any(ref.get("uid") == meta.get("uid") for ref in owners):
            kube.delete(api_version, kind, meta["namespace"], name)
            deleted.append(f"{kind}/{name}")
    if deleted:
        log.info("Deleted %s of %s/%s", ", ".join(deleted), meta["namespace"], meta["name"])
    return deleted


def status_patch(current: dict[str, Any] | None, desired: dict[str, Any]) -> dict[str, Any]:
    """The merge patch from `current` to `desired`: changed fields, null for fields no longer there; {} when equal."""
    current = current or {}
    changed = {k: v for k, v in desired.items() if current.get(k) != v}
    return {**changed, **{k: None for k in current if k not in desired}}


def write_status(
    body: dict[str, Any], build: Callable[[dict[str, Any]], dict[str, Any]], kube: KubeClient, *, attempts: int = 4,
) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Write the status `build` derives from the current one, only when it changes something.

    The patch carries the resourceVersion the status was built from, so a concurrent writer (the reconciler and
    the autoscaler both write status) makes it fail with 409 instead of silently replacing the other's conditions;
    then the object is read again and the status rebuilt on top of what the other wrote.
    Returns (status before, status written), or None when nothing needed writing.
    """
    for attempt in range(attempts):
        meta = body["metadata"]
        current = body.get("status") or {}
        desired = build(current)
        patch = status_patch(current, desired)
        if not patch:
            return None
        precondition = {"resourceVersion": meta["resourceVersion"]} if meta.get("resourceVersion") else {}
        try:
            kube.patch(API_VERSION, body["kind"], meta["namespace"], meta["name"],
                       {"metadata": precondition, "status": patch}, subresource="status")
            return current, desired
        except KubeError as exc:
            if exc.status != 409 or attempt == attempts - 1:
                raise
        log.info("Status of %s %s/%s changed meanwhile; rebuilding it", body["kind"], meta["namespace"], meta["name"])
        body = kube.get(API_VERSION, body["kind"], meta["namespace"], meta["name"])
        if body is None:
            return None
    return None


def report_status(
    body: dict[str, Any], build: Callable[[dict[str, Any]], dict[str, Any]], kube: KubeClient, emit: EmitEvent, *,
    is_problem: Callable[[dict[str, Any]], bool], announced: tuple[str, ...] = (R.READY,),
) -> bool:
    """Write the status and announce the condition changes it made (once, after the write succeeded)."""
    written = write_status(body, build, kube)
    if written is None:
        return False
    before, after = written
    announce_transitions(before.get("conditions"), after.get("conditions"), emit, is_problem=is_problem,
                         announced=announced)
    return True


def announce_transitions(
    before: list[dict] | None, after: list[dict] | None, emit: EmitEvent, *,
    is_problem: Callable[[dict[str, Any]], bool], announced: tuple[str, ...] = (R.READY,),
) -> None:
    """An Event for each condition change a user must see in `kubectl describe`: a Warning for a problem, Normal
    for a recovery, Normal when one of the `announced` conditions becomes True (e.g. Ready, Sized)."""
    for new in after or ():
        old = find(before, new["type"])
        if old is not None and (old["status"], old["reason"]) == (new["status"], new["reason"]):
            continue
        message = new["message"] or f"{new['type']} is {new['status']}"
        if is_problem(new):
            emit("Warning", new["reason"], message)
        elif old is not None and is_problem(old):
            emit("Normal", new["reason"], f"{message} (was: {old['reason']})")
        elif new["type"] in announced and new["status"] == "True":
            emit("Normal", new["reason"], message)
