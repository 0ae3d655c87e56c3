"""Runs a request's work while watching its connection, so a client that leaves frees it.

When the client disconnects, the work is cancelled: a request still queued is removed from
its batcher's queue, a sequence being generated is cancelled in its replica.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request

T = TypeVar("T")


class ClientDisconnected(Exception):
    """The client went away before the answer was ready."""


async def _wait_for_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await ``work``; raise ClientDisconnected (after cancelling it) if the client leaves.

    ``work`` runs in the calling task and only the watcher gets a task of its own: one task
    per request fewer than wrapping ``work`` too, which is measurable per request
    (benchmarks/bench_overhead.py). When the client leaves, the watcher cancels the calling
    task, so ``work`` unwinds (its queue entry or sequence is dropped) before this raises.
    """
    task = asyncio.current_task()
    gone = False

    async def watch() -> None:
        nonlocal gone
        await _wait_for_disconnect(request)
        gone = True
        task.cancel()

    watcher = asyncio.create_task(watch())
    try:
        result = await work
    except BaseException:
        if not gone:
            raise
        task.uncancel()  # the cancellation was ours, not the server's
        raise ClientDisconnected from None
    finally:
        watcher.cancel()
    if gone:  # ``work`` swallowed the cancellation; the client is gone all the same
        task.uncancel()
        raise ClientDisconnected
    return result
