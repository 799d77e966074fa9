"""A small JSON client over the official `kubernetes` package: get, create, merge-patch, delete any kind."""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

import kubernetes
from kubernetes.client.exceptions import ApiException

from neuroscale.k8s.ssa import FIELD_MANAGER, normalized, up_to_date
from neuroscale.k8s.paths import collection_path, object_path

log = logging.getLogger(__name__)

Outcome = Literal["created", "patched", "unchanged"]
MERGE_PATCH = "application/merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"  # JSON is YAML
UNREAD = object()  # `apply` reads the live object itself


class KubeError(RuntimeError):
    """An API call failed; `status` is the HTTP status (0 when the server could not be reached)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status


def load_config() -> kubernetes.client.ApiClient:
    """In-cluster credentials when running in a pod, else the current kubeconfig context.

    `KUBECONFIG` is read now: the client library reads it once, at import, and would miss a later change.
    """
    configuration = kubernetes.client.Configuration()
    # kopf's worker threads and the periodic loops share this client: a pool of 10 would drop connections.
    configuration.connection_pool_maxsize = 32
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(config_file=os.environ.get("KUBECONFIG"),
                                           client_configuration=configuration)
    return kubernetes.client.ApiClient(configuration)


@dataclass
class WriteCounter:
    """Counts API writes by verb: the benchmark and the no-op-resync test read it."""

    counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, verb: str) -> None:
        with self._lock:
            self.counts[verb] = self.counts.get(verb, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class KubeClient:
    """Synchronous and thread-safe (urllib3 pools); kopf runs sync handlers in worker threads."""

    def __init__(self, api: kubernetes.client.ApiClient | None = None, timeout: float = 30.0) -> None:
        self.api = api or load_config()
        self.timeout = timeout
        self.writes = WriteCounter()

    def _call(
        self, method: str, path: str, body: Any = None, content_type: str | None = None,
        query: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        if method != "GET":
            self.writes.add(method)
        _, url, hdrs, serialized, _ = self.api.param_serialize(
            method=method, resource_path=path, header_params=headers, body=body, auth_settings=["BearerToken"],
            query_params=list((query or {}).items()),
        )
        try:
            response = self.api.call_api(method, url, header_params=hdrs, body=serialized, _request_timeout=self.timeout)
            response.read()
        except ApiException as exc:
            raise KubeError(exc.status or 0, _message(exc.body) or str(exc.reason)) from exc
        except Exception as exc:  # urllib3 connection errors and the like: the server is unreachable.
            raise KubeError(0, f"Kubernetes API unreachable: {exc}") from exc
        if response.status >= 400:
            raise KubeError(response.status, _message(response.data))
        return json.loads(response.data) if response.data else {}

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", object_path(api_version, kind, namespace, name))
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """The objects of `kind` in `namespace` matching `label_selector` (kubectl -l syntax)."""
        found = self._call("GET", collection_path(api_version, kind, namespace),
                           query={"labelSelector": label_selector})
        return list(found.get("items") or [])

    def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        meta = obj["metadata"]
        return self._call("POST", collection_path(obj["apiVersion"], obj["kind"], meta.get("namespace")), obj)

    def patch(
        self, api_version: str, kind: str, namespace: str | None, name: str, patch: dict[str, Any],
        subresource: str | None = None, field_manager: str = FIELD_MANAGER,
    ) -> dict[str, Any]:
        """A JSON merge patch (RFC 7386), recorded in managedFields under `field_manager`."""
        path = object_path(api_version, kind, namespace, name, subresource)
        return self._call("PATCH", path, patch, MERGE_PATCH, query={"fieldManager": field_manager})

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> bool:
        """Delete, dependents first (foreground: a Deployment's ReplicaSets stop making pods before it goes, so
        none is attempted after its ServiceAccount is gone); False when it was already gone."""
        try:
            self._call("DELETE", object_path(api_version, kind, namespace, name),
                       {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"})
        except KubeError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def apply(
        self, desired: dict[str, Any], *, field_manager: str = FIELD_MANAGER, live: Any = UNREAD,
    ) -> Outcome:
        """Server-side apply `desired` as `field_manager`, unless the live object already carries exactly it.

        The manager owns exactly the fields it applies: a field left out of `desired` is removed from the live
        object (unless someone else also owns it), a field another writer added (an annotation, an HPA's
        replicas) stays. `force` takes back a field a hand edit took over. Comparing with what the manager last
        applied (read from managedFields) keeps a settled resync at zero writes. `live` is the object as the caller
        just read it (None: absent), to spare reading it again.
        """
        meta = desired["metadata"]
        api_version, kind, namespace, name = desired["apiVersion"], desired["kind"], meta.get("namespace"), meta["name"]
        if live is UNREAD:
            live = self.get(api_version, kind, namespace, name)
        if up_to_date(live, desired, field_manager):
            return "unchanged"
        if live is not None:
            log.info("Applying %s %s/%s: it differs from the desired state", kind, namespace, name)
        path = object_path(api_version, kind, namespace, name)
        self._call("PATCH", path, normalized(desired), APPLY_PATCH,
                   query={"fieldManager": field_manager, "force": "true"})
        return "created" if live is None else "patched"


def _message(body: Any) -> str:
    if not body:
        return ""
    try:
        data = json.loads(body)
    except (TypeError, ValueError):
        return body.decode() if isinstance(body, bytes) else str(body)
    return data.get("message", "") if isinstance(data, dict) else str(data)
