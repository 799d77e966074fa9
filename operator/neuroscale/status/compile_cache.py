"""status.compileCache and status.coldStart from the key's S3 marker and the pods (pure).

The state follows one key through its life: Miss (no complete artifacts, no replica yet) → Compiling (a replica of
this key is starting) → Uploading (it is Ready and its sidecar uploads) → Ready (the marker appeared); Hit when the
marker was there before this ModelDeployment compiled anything. Cold starts are measured per pod, from
creationTimestamp to the Ready condition's lastTransitionTime, once per pod, and only for pods of the current key
(a compile and a restore are different starts).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from statistics import median_high
from typing import Any

from neuroscale import reasons as R
from neuroscale.conditions import ConditionUpdate, rfc3339
from neuroscale.render import labels

# Samples kept in status: enough for a median that ignores one compile among restores, few enough to stay small.
RECENT_SAMPLES = 8
# States in which this ModelDeployment is producing the artifacts itself.
_PRODUCING = ("Miss", "Compiling", "Uploading")


@dataclass(frozen=True)
class MarkerCheck:
    """What S3 said about a key's completion marker: found, or not checked with the reason and a message."""

    found: bool | None
    reason: str = ""
    message: str = ""


@dataclass(frozen=True)
class PodStart:
    """One pod of a key: when it was created and, once Ready, how long that took."""

    name: str
    created: str
    ready_seconds: float | None


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def pod_starts(pods: list[dict[str, Any]], key: str) -> list[PodStart]:
    """The pods rendered for `key` (pod annotation), oldest first, with their time to Ready where they are Ready."""
    found = []
    for pod in pods:
        meta = pod.get("metadata") or {}
        if (meta.get("annotations") or {}).get(labels.ARTIFACT_KEY) != key or meta.get("deletionTimestamp"):
            continue
        created = meta.get("creationTimestamp")
        if not created:
            continue
        ready = next((c for c in (pod.get("status") or {}).get("conditions") or ()
                      if c.get("type") == "Ready" and c.get("status") == "True"), None)
        seconds = None
        if ready is not None and ready.get("lastTransitionTime"):
            seconds = max(0.0, (_parse(ready["lastTransitionTime"]) - _parse(created)).total_seconds())
        found.append(PodStart(meta.get("name", ""), created, seconds))
    return sorted(found, key=lambda p: (_parse(p.created), p.name))


def cold_start_status(previous: dict[str, Any] | None, key: str, starts: list[PodStart]) -> dict[str, Any] | None:
    """The measured cold start for `key`: new Ready pods are added once; unchanged when nothing new was seen."""
    same = previous if previous and previous.get("key") == key else None
    recent = list((same or {}).get("recent") or [])
    known = {sample["pod"] for sample in recent}
    new = [{"pod": p.name, "seconds": round(p.ready_seconds, 1)} for p in starts
           if p.ready_seconds is not None and p.name not in known]
    if not new:
        return same
    recent = (recent + new)[-RECENT_SAMPLES:]
    return {
        "key": key,
        # The upper median: one replica that compiled among several that restored does not move it, and with two
        # samples the slower one counts (an autoscaler that assumes too short a start under-provisions).
        "seconds": median_high(sample["seconds"] for sample in recent),
        "samples": int((same or {}).get("samples", 0)) + len(new),
        "recent": recent,
    }


def compile_cache_status(
    previous: dict[str, Any] | None, *, key: str, uri: str, check: MarkerCheck, starts: list[PodStart],
    now: datetime,
) -> tuple[dict[str, Any], ConditionUpdate]:
    """status.compileCache and the CompileCache condition for `key` after one look at S3 and the pods."""
    same = previous if previous and previous.get("key") == key else {}
    if check.found is None:
        state = "Unknown"
        condition = ConditionUpdate(R.COMPILE_CACHE, "False", check.reason,
                                    f"cannot check {uri}: {check.message}; replicas compile unless the artifacts "
                                    "are there")
    elif check.found:
        state = "Ready" if same.get("state") in (*_PRODUCING, "Ready") else "Hit"
        what = "uploaded by a replica of this ModelDeployment" if state == "Ready" else "found"
        condition = ConditionUpdate(R.COMPILE_CACHE, "True", R.ARTIFACTS_FOUND,
                                    f"complete artifacts for key {key} {what} in {uri}: new replicas restore them")
    else:
        if any(p.ready_seconds is not None for p in starts):
            state, doing = "Uploading", "a Ready replica is uploading what it compiled"
        elif starts:
            state, doing = "Compiling", "a replica is compiling"
        else:
            state, doing = "Miss", "the next replica compiles and uploads"
        condition = ConditionUpdate(R.COMPILE_CACHE, "True", R.ARTIFACTS_MISSING,
                                    f"no complete artifacts for key {key} in {uri}: {doing}")
    status: dict[str, Any] = {"key": key, "uri": uri, "state": state}
    first_ready = next((p.ready_seconds for p in starts if p.ready_seconds is not None), None)
    ready_seconds = same.get("readySeconds", first_ready)
    if ready_seconds is not None:
        status["readySeconds"] = ready_seconds
    # Stamped when key or state change, not on every check: a check that finds nothing new writes nothing.
    unchanged = {k: same.get(k) for k in ("key", "uri", "state")} == {k: status[k] for k in ("key", "uri", "state")}
    status["lastTransitionTime"] = (same["lastTransitionTime"] if unchanged and "lastTransitionTime" in same
                                    else rfc3339(now))
    return status, condition
