"""The replicas behind a Service, read from its EndpointSlices (discovery.k8s.io/v1) as plain dicts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, order=True)
class Replica:
    address: str  # host:port
    ready: bool


def replicas_from_slices(slices: Iterable[Mapping[str, Any]], port_name: str) -> list[Replica]:
    """Every endpoint address with the named port, once, sorted. Ready means `conditions.ready` (serving and not
    terminating); an endpoint without conditions counts as ready, as the API documents for a nil value. An IPv6
    address is bracketed."""
    found: dict[str, bool] = {}
    for slice_ in slices:
        port = next((p.get("port") for p in slice_.get("ports") or () if p.get("name", "") == port_name), None)
        if not isinstance(port, int):
            continue
        for endpoint in slice_.get("endpoints") or ():
            ready = (endpoint.get("conditions") or {}).get("ready") is not False
            for address in endpoint.get("addresses") or ():
                host = f"[{address}]" if ":" in address else address
                key = f"{host}:{port}"
                found[key] = found.get(key, False) or ready
    return sorted(Replica(address, ready) for address, ready in found.items())
