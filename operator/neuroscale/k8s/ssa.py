"""Server-side apply without needless writes (pure): what a field manager last applied, read from managedFields.

The API server records, per field manager, the set of fields it applied (`metadata.managedFields[].fieldsV1`).
`applied_by` reads that set back out of a live object, like client-go's `Extract*` functions, so the operator can
compare it with what it would apply now and skip the request when they are equal: a settled resync makes no write,
and a field the user removed from the spec is still removed from the child (it is in the live set, not the new one).
"""

from __future__ import annotations

import json
from typing import Any

FIELD_MANAGER = "neuroscale"
IDENTITY = ("apiVersion", "kind")


def applied_by(live: dict[str, Any], manager: str = FIELD_MANAGER) -> dict[str, Any] | None:
    """The part of `live` that `manager` owns through Apply on the main resource; None when it owns nothing."""
    meta = live.get("metadata") or {}
    entry = next((m for m in meta.get("managedFields") or ()
                  if m.get("manager") == manager and m.get("operation") == "Apply" and not m.get("subresource")),
                 None)
    if entry is None:
        return None
    owned = _extract(live, entry.get("fieldsV1") or {})
    owned.update({k: live[k] for k in IDENTITY if k in live})
    owned.setdefault("metadata", {}).update({k: meta[k] for k in ("name", "namespace") if k in meta})
    return owned


def _extract(value: Any, fields: dict[str, Any]) -> Any:
    """The sub-tree of `value` described by a fieldsV1 set (`f:` fields, `k:` keyed and `v:` set list items)."""
    members = {k: v for k, v in fields.items() if k != "."}
    if not members:  # a leaf, or an atomic map/list owned as a whole
        return value
    if isinstance(value, dict):
        return {name: _extract(value[name], sub) for key, sub in members.items()
                if key.startswith("f:") and (name := key[2:]) in value}
    if isinstance(value, list):
        found: list[tuple[int, Any]] = []
        for key, sub in members.items():
            if key.startswith("k:"):
                wanted = json.loads(key[2:])
                index = next((i for i, item in enumerate(value) if isinstance(item, dict)
                              and all(item.get(k) == v for k, v in wanted.items())), None)
                if index is not None:
                    found.append((index, _extract(value[index], sub)))
            elif key.startswith("v:"):
                item = json.loads(key[2:])
                if item in value:
                    found.append((value.index(item), item))
            elif key.startswith("i:") and int(key[2:]) < len(value):
                found.append((int(key[2:]), _extract(value[int(key[2:])], sub)))
        return [item for _, item in sorted(found, key=lambda pair: pair[0])]
    return value


def normalized(obj: Any) -> Any:
    """What the API server keeps of an applied object: no nulls, no empty lists (omitted in storage), and
    whole-number floats as ints (JSON numbers round-trip as either)."""
    if isinstance(obj, dict):
        return {k: normalized(v) for k, v in obj.items() if v is not None and v != []}
    if isinstance(obj, list):
        return [normalized(v) for v in obj]
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    return obj


def up_to_date(live: dict[str, Any] | None, desired: dict[str, Any], manager: str = FIELD_MANAGER) -> bool:
    """True when applying `desired` would change nothing: `manager` already applied exactly these fields and
    values, and nobody has since taken one of them over (a hand edit moves a field to another manager)."""
    if live is None:
        return False
    owned = applied_by(live, manager)
    return owned is not None and normalized(owned) == normalized(desired)
