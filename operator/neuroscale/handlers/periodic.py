"""Periodic work over every object of a kind (resync, autoscaling) without kopf timers, and so without finalizers.

kopf timers always put a finalizer on the objects they run for, so a resource deleted while the operator is
stopped or uninstalled would hang in Terminating (and its namespace with it). Instead, a kopf index keeps the
objects the operator sees (indexes need no finalizer), and one task per purpose walks it every interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections.abc import Callable
from typing import Any

import kopf

log = logging.getLogger(__name__)

# (namespace, name, memo) → one unit of work, run in a worker thread.
RunOne = Callable[[str, str, kopf.Memo], None]

# Objects worked on at once: enough to keep a slow Prometheus from stretching the interval, few enough for the
# API server's client-side rate limits.
CONCURRENCY = 8


def register_periodic(
    registry: kopf.OperatorRegistry, resource: tuple[str, str, str], *, id: str, interval: float,
    initial_delay: float, run_one: RunOne, when: Callable[[kopf.Spec], bool] | None = None,
) -> None:
    """Run `run_one` for every object of `resource` (that `when` admits) every `interval` seconds."""
    index_id = f"{id}_objects"
    # kopf.event() finds kopf's Event queue through context variables that kopf sets for its own handlers; the
    # index handler runs in that context, so the loop borrows a copy of it for its threads.
    handler_context: list[contextvars.Context] = []

    def index(namespace: str, name: str, spec: kopf.Spec, **_: Any) -> dict[tuple[str, str], bool] | None:
        if not handler_context:
            handler_context.append(contextvars.copy_context())
        return {(namespace, name): True} if when is None or when(spec) else None

    async def loop(objects: kopf.Index, memo: kopf.Memo) -> None:
        limit = asyncio.Semaphore(CONCURRENCY)

        async def one(namespace: str, name: str) -> None:
            async with limit:
                context = (handler_context[0] if handler_context else contextvars.copy_context()).copy()
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        None, functools.partial(context.run, run_one, namespace, name, memo))
                except kopf.TemporaryError as exc:  # an API call failed; the next round tries again
                    log.warning("%s of %s/%s: %s", id, namespace, name, exc)
                except Exception:  # one object's failure never stops the others or the next round
                    log.exception("%s failed for %s/%s", id, namespace, name)

        await asyncio.sleep(initial_delay)
        while True:
            started = asyncio.get_running_loop().time()
            await asyncio.gather(*(one(ns, name) for ns, name in list(objects)))
            elapsed = asyncio.get_running_loop().time() - started
            await asyncio.sleep(max(0.0, interval - elapsed))

    async def start(memo: kopf.Memo, **kwargs: Any) -> None:
        tasks = memo.setdefault("periodic_tasks", {})
        tasks[id] = asyncio.create_task(loop(kwargs[index_id], memo), name=f"neuroscale-{id}")

    async def stop(memo: kopf.Memo, **_: Any) -> None:
        task = memo.get("periodic_tasks", {}).pop(id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    kopf.index(*resource, id=index_id, registry=registry)(index)
    kopf.on.startup(registry=registry, id=f"{id}_start")(start)
    kopf.on.cleanup(registry=registry, id=f"{id}_stop")(stop)
