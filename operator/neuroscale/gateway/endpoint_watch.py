"""Watch a Service's EndpointSlices and hand the gateway's event loop the replica set each time it changes.

The official (synchronous) Kubernetes client runs in a daemon thread: list, then watch from the list's
resourceVersion; a watch that ends is resumed, an expired one (410) or any error relists after a pause. Only
get/list/watch on endpointslices in the tier's namespace are needed (the Role the operator renders).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from neuroscale.routing.config import ReplicaRouting
from neuroscale.routing.endpoints import SERVICE_NAME_LABEL, Replica, replicas_from_slices

log = logging.getLogger(__name__)

WATCH_SECONDS = 60  # the server ends each watch after this; the thread notices a stop within it
RETRY_SECONDS = 2.0


class EndpointSliceWatch:
    def __init__(self, routing: ReplicaRouting, publish: Callable[[list[Replica]], None],
                 loop: asyncio.AbstractEventLoop, api: Any = None) -> None:
        self._routing = routing
        self._publish = publish
        self._loop = loop
        self._api = api
        self._stopped = threading.Event()
        self._slices: dict[str, dict[str, Any]] = {}
        self._thread = threading.Thread(target=self._run, name=f"endpointslices-{routing.service}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _emit(self) -> None:
        replicas = replicas_from_slices(self._slices.values(), self._routing.port_name)
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._publish, replicas)

    def _run(self) -> None:
        import kubernetes

        from neuroscale.k8s.client import load_config

        try:
            client = self._api or load_config()
        except Exception as error:  # noqa: BLE001 - without credentials the tier is served through its Service
            log.warning("cannot watch EndpointSlices (%s); requests go through the Service", error)
            return
        discovery = kubernetes.client.DiscoveryV1Api(client)
        selector = f"{SERVICE_NAME_LABEL}={self._routing.service}"
        namespace = self._routing.namespace
        while not self._stopped.is_set():
            try:
                listed = discovery.list_namespaced_endpoint_slice(namespace, label_selector=selector)
                self._slices = {item.metadata.name: client.sanitize_for_serialization(item) for item in listed.items}
                self._emit()
                version = listed.metadata.resource_version
                while not self._stopped.is_set():
                    watch = kubernetes.watch.Watch()
                    for event in watch.stream(discovery.list_namespaced_endpoint_slice, namespace,
                                              label_selector=selector, resource_version=version,
                                              timeout_seconds=WATCH_SECONDS, allow_watch_bookmarks=True):
                        if self._stopped.is_set():
                            watch.stop()
                            break
                        body = client.sanitize_for_serialization(event["object"])
                        version = body["metadata"].get("resourceVersion") or version
                        if event["type"] == "BOOKMARK":
                            continue
                        if event["type"] == "DELETED":
                            self._slices.pop(body["metadata"]["name"], None)
                        else:
                            self._slices[body["metadata"]["name"]] = body
                        self._emit()
            except kubernetes.client.ApiException as error:
                if error.status != 410 and not self._stopped.is_set():
                    log.warning("EndpointSlice watch of %s/%s failed: HTTP %s", namespace, self._routing.service,
                                error.status)
            except Exception as error:  # noqa: BLE001 - keep watching through network trouble
                if not self._stopped.is_set():
                    log.warning("EndpointSlice watch of %s/%s failed: %s", namespace, self._routing.service,
                                error)
            self._stopped.wait(RETRY_SECONDS)
