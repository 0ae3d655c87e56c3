"""The risk service's database writes, off the event loop, in batches: one thread, one queue.

Two kinds of write reach the registry from the scoring path: an alert (with its webhook outbox
rows), which the score waits for (an alert its caller was told about is durable), and the
entities' feature state, written behind every second. Each used to be its own
``asyncio.to_thread`` session and commit; now they are queued to one writer thread, which
takes whatever is waiting and writes it with one transaction per kind (group commit: alerts
that arrive while a write runs share the next one). So the event loop never waits on the
database, SQLite writers never contend with each other for its lock, and a burst of alerts
costs one commit, not one each.

The queue is bounded (``MAX_PENDING``): if the database stalls, scores with an alert fail
fast with 503 rather than queueing without limit (an alert is never answered unwritten), and
a feature-state flush is retried at the next interval.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

from aimass.errors import Unavailable
from aimass.registry import risk as rows

MAX_PENDING = 1024
"""Writes waiting at most (alerts and state flushes together)."""
MAX_BATCH = 256
"""Writes taken into one pass of the writer."""

log = logging.getLogger("aimass.risk")


@dataclass
class _Write:
    """One queued write and the future its caller awaits (settled on the caller's loop)."""

    what: rows.NewAlert | tuple[str, dict[str, dict[str, Any]]]
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


_STOP = object()


class RiskWriter:
    def __init__(self, url: str) -> None:
        self.url = url
        self._queue: queue.Queue = queue.Queue(MAX_PENDING)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="risk-writer", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Write what is queued, then end the thread."""
        if self._thread is None:
            return
        await asyncio.to_thread(self._queue.put, _STOP)
        await asyncio.to_thread(self._thread.join)
        self._thread = None

    async def add_alert(self, alert: rows.NewAlert) -> rows.Alert:
        """``alert`` written (committed) with its outbox rows; Unavailable if the writer is
        ``MAX_PENDING`` writes behind."""
        return await self._submit(alert)

    async def save_entities(self, key: str, dumps: dict[str, dict[str, Any]]) -> None:
        await self._submit((key, dumps))

    async def _submit(self, what: rows.NewAlert | tuple[str, dict]) -> Any:
        if self._thread is None:
            raise Unavailable("the risk service is not running (the server is stopping)")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        try:
            self._queue.put_nowait(_Write(what, future, loop))
        except queue.Full:
            raise Unavailable(
                f"the risk database writer is {MAX_PENDING} writes behind; try again"
            ) from None
        return await future

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH and batch[-1] is not _STOP:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = batch[-1] is _STOP
            writes = [w for w in batch if w is not _STOP]
            if writes:
                self._write(writes)
            if stop:
                return

    def _write(self, writes: list[_Write]) -> None:
        alerts = [w for w in writes if isinstance(w.what, rows.NewAlert)]
        states = [w for w in writes if not isinstance(w.what, rows.NewAlert)]
        done: list[tuple[_Write, Any, BaseException | None]] = []
        if alerts:
            try:
                written = rows.add_alerts(self.url, [w.what for w in alerts])
                done += [(w, a, None) for w, a in zip(alerts, written, strict=True)]
            except Exception as exc:
                log.exception("risk: could not write %d alerts", len(alerts))
                done += [(w, None, exc) for w in alerts]
        by_key: dict[str, dict[str, dict[str, Any]]] = {}
        for w in states:
            key, dumps = w.what
            by_key.setdefault(key, {}).update(dumps)
        failed: dict[str, BaseException] = {}
        for key, dumps in by_key.items():
            try:
                rows.save_entities(self.url, key, dumps)
            except Exception as exc:
                failed[key] = exc
        done += [(w, None, failed.get(w.what[0])) for w in states]
        loops = {w.loop for w, _, _ in done}
        for loop in loops:
            mine = [d for d in done if d[0].loop is loop]
            try:
                loop.call_soon_threadsafe(_settle, mine)
            except RuntimeError:  # that loop has closed: nobody waits any more
                pass


def _settle(done: list[tuple[_Write, Any, BaseException | None]]) -> None:
    """On the caller's loop: give each waiting future its result or error (a caller that left
    has cancelled its future; the write stands)."""
    for write, result, error in done:
        if write.future.done():
            continue
        if error is None:
            write.future.set_result(result)
        else:
            write.future.set_exception(error)
