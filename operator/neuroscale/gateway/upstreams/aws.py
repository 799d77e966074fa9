"""What the Bedrock and SageMaker adapters share: boto3 client settings, error mapping, and running the blocking
boto3 calls and event-stream reads on worker threads so the event loop never waits on them."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncGenerator, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EventStreamError,
    ReadTimeoutError,
)

from neuroscale.gateway.config import Timeouts
from neuroscale.gateway.upstreams.base import UpstreamError

# Errors a caller causes: another tier would reject the same request, so they go back to the client.
_CLIENT_FAULTS = frozenset({"ValidationException", "ValidationError"})
_T = TypeVar("_T")
_THROTTLED = frozenset({"throttlingexception", "toomanyrequestsexception", "servicequotaexceededexception"})


def client_config(timeouts: Timeouts) -> Config:
    # The cascade is the retry policy (it escalates), so botocore retries only once, quickly.
    return Config(
        connect_timeout=timeouts.connect_seconds,
        read_timeout=timeouts.total_seconds,
        retries={"max_attempts": 2, "mode": "standard"},
        max_pool_connections=64,
    )


def new_response_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def upstream_error(tier: str, error: Exception) -> UpstreamError:
    """Map a botocore failure to the cascade's three kinds."""
    if isinstance(error, UpstreamError):
        return error
    if isinstance(error, ReadTimeoutError | ConnectTimeoutError):
        return UpstreamError("timeout", f"tier {tier} timed out: {error}")
    if isinstance(error, ClientError | EventStreamError):
        code = error.response.get("Error", {}).get("Code", "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        message = error.response.get("Error", {}).get("Message", str(error))
        if code in _CLIENT_FAULTS:
            body = {"error": {"message": f"tier {tier}: {message}", "type": "invalid_request_error", "param": None,
                              "code": code}}
            return UpstreamError("rejected", f"tier {tier} rejected the request: {message}", 400, body)
        if code == "ModelTimeoutException":
            return UpstreamError("timeout", f"tier {tier} timed out: {message}", status)
        if code.lower() in _THROTTLED:
            status = 429  # also inside an event stream, whose HTTP status was 200
        return UpstreamError("error", f"tier {tier} failed: {code}: {message}", status)
    if isinstance(error, BotoCoreError):
        return UpstreamError("error", f"tier {tier} failed: {error}")
    return UpstreamError("error", f"tier {tier} failed: {type(error).__name__}: {error}")


class ThreadRunner:
    """A bounded pool for one tier's blocking calls, so slow streams of one tier cannot starve the others."""

    def __init__(self, tier: str, workers: int = 32) -> None:
        self.tier = tier
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"tier-{tier}")

    async def call(self, function: Callable[[], _T]) -> _T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, function)
        except Exception as error:
            raise upstream_error(self.tier, error) from None

    async def iterate(self, open_stream: Callable[[], Iterable[Any]]) -> AsyncGenerator[Any, None]:
        """Items of a blocking iterable (a botocore EventStream), read on a worker thread and handed over as they
        arrive. Closing the returned iterator tells the thread to stop and close the iterable."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def hand_over(kind: str, item: Any) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, (kind, item))
            except RuntimeError:
                stop.set()  # the loop is gone; nobody is listening

        def pump() -> None:
            try:
                items = open_stream()
                try:
                    for item in items:
                        if stop.is_set():
                            return
                        hand_over("item", item)
                finally:
                    close = getattr(items, "close", None)
                    if close is not None:
                        close()
                hand_over("end", None)
            except Exception as error:
                hand_over("error", error)

        loop.run_in_executor(self._pool, pump)
        try:
            while True:
                kind, item = await queue.get()
                if kind == "end":
                    return
                if kind == "error":
                    raise upstream_error(self.tier, item)
                yield item
        finally:
            stop.set()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
