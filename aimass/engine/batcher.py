"""The dynamic batcher: one bounded queue per model, merged into batches for free replicas.

A request waits as an ``_Item`` holding a future; a request of more than ``max_batch_size``
rows waits as several items (chunks of at most that many rows) answered together. When a
replica is free, the batcher takes queued items in arrival order while they fit
(``max_batch_size`` rows, and when requests carry per-row token counts under ``__cost__``,
``max_batch_tokens`` with padding counted: longest row × rows). If the batch is not full it
waits up to ``max_delay_ms`` from the oldest item's arrival for more. Items whose deadline
passed are answered 504 and never reach the model; items whose client went away are removed
from the queue at once. Batches run as tasks, so several replicas compute at the same time.

Background requests (vector store ingestion, batch jobs) yield to online ones: while an online
item waits, batches are made of online items only, and a background item joins a batch only
when no online item waits. An online request then waits behind at most the one background
batch already computing, never behind queued ones, and is not padded to their length.
With ``batching.online_replicas`` set, not even behind that: while online requests come (one
arrived in the last ``ONLINE_QUIET_S``), a background batch starts only while that many other
replicas stay free (as long as the model has more replicas than that); with no online
traffic, background batches take every replica.

``limits.max_queue`` counts requests, not items: a request waits while any of its chunks is
queued, and it is admitted whole or refused whole (an immediate 429). So any request an idle
queue can take is admitted, however many chunks it needs; what bounds its size is the
deployment's ``max_request_rows`` (413).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from aimass import metrics
from aimass.engine.pool import ReplicaPool
from aimass.errors import AimassError, DeadlineExceeded, InvalidInput, ModelFailed, QueueFull
from aimass.runtimes.base import ROW_ERRORS, Payload
from aimass.spec import ModelSpec

COST_KEY = "__cost__"
ONLINE_QUIET_S = 1.0
"""``online_replicas`` are kept free only this long after the last online request arrived."""


class _Request:
    """The chunks of one split request: it counts as waiting while any of them is queued, and
    once one of them failed the others are dropped before they reach a replica."""

    __slots__ = ("failed", "queued")

    def __init__(self, chunks: int):
        self.queued = chunks
        self.failed = False


@dataclass(eq=False)
class _Item:
    payload: Payload
    rows: int
    cost: int
    signature: tuple
    deadline: float
    request: _Request | None = None  # None: the item is a whole request
    background: bool = False
    queued: bool = True
    enqueued: float = field(default_factory=time.monotonic)
    future: asyncio.Future = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class Batcher:
    """Queue, batch and dispatch requests for one model version."""

    def __init__(
        self, spec: ModelSpec, pool: ReplicaPool, stats: metrics.InferenceStats | None = None
    ):
        self.spec = spec
        self._pool = pool
        self.stats = stats or metrics.InferenceStats()
        self._queue: deque[_Item] = deque()
        self._waiting = 0  # requests with an item in the queue
        self._arrived = asyncio.Event()
        self._online_at = float("-inf")
        """when the last online request arrived (``online_replicas``)"""
        self._tasks: set[asyncio.Task] = set()
        self._labels = metrics.labels(spec.name, spec.version)
        self._depth_gauge = metrics.QUEUE_DEPTH.labels(**self._labels)
        self._runner = asyncio.create_task(self._run(), name=f"batcher-{spec.name}")

    @property
    def depth(self) -> int:
        """Requests waiting (a split request counts once, until its last chunk is taken)."""
        return self._waiting

    def check_room(self) -> None:
        """Raise QueueFull (429) when the queue cannot take another request now."""
        limit = self.spec.limits.max_queue
        if self._waiting >= limit:
            raise QueueFull(
                f"model {self.spec.name!r} queue is full: {self._waiting} requests are waiting "
                f"and limits.max_queue is {limit}",
                retry_after=1,
            )

    async def submit(
        self, payload: Payload, rows: int, deadline: float, background: bool = False
    ) -> Payload:
        """Queue one request and await its outputs; more rows than ``max_batch_size`` are
        queued as chunks and their outputs joined in order. ``background``: it yields to
        online requests (see the module note)."""
        self.check_room()
        step = self.spec.batching.max_batch_size
        if rows > step:
            return await self._submit_chunks(payload, rows, step, deadline, background)
        item = _Item(payload, rows, _max_cost(payload), _signature(payload), deadline)
        item.background = background
        self._enqueue([item])
        try:
            # A waiter that leaves (deadline, client gone) cancels the item's future itself:
            # the batcher skips done futures, and ``_abandon`` takes the item off the queue.
            return await self._within(item.future, deadline)
        finally:
            self._abandon(item)

    async def _submit_chunks(
        self, payload: Payload, rows: int, step: int, deadline: float, background: bool
    ) -> Payload:
        """When one chunk fails (its deadline, a row error), the others leave the queue too:
        the client already has its error, so their rows must not be computed."""
        request = _Request(-(-rows // step))
        items = []
        for start in range(0, rows, step):
            chunk = {k: v[start : start + step] for k, v in payload.items()}
            n = min(step, rows - start)
            item = _Item(chunk, n, _max_cost(chunk), _signature(chunk), deadline, request)
            item.background = background
            items.append(item)
        self._enqueue(items)
        try:
            parts = await self._within(asyncio.gather(*(i.future for i in items)), deadline)
        finally:
            for item in items:
                self._abandon(item)
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    async def _within(self, outputs: asyncio.Future, deadline: float):
        try:
            async with asyncio.timeout(deadline - time.monotonic()):
                return await outputs
        except TimeoutError:
            raise DeadlineExceeded(
                f"model {self.spec.name!r}: request exceeded its deadline before completing "
                f"(limits.timeout_s={self.spec.limits.timeout_s})"
            ) from None

    def _enqueue(self, items: list[_Item]) -> None:
        if not items[0].background:
            self._online_at = time.monotonic()
        self._queue.extend(items)
        self._waiting += 1
        self._changed()

    def _dequeued(self, item: _Item) -> None:
        """Account for an item that left the queue (the caller removed it)."""
        item.queued = False
        request = item.request
        if request is not None:
            request.queued -= 1
            if request.queued:
                return
        self._waiting -= 1

    def _abandon(self, item: _Item) -> None:
        """The request is answered or gone: its item must not run any more."""
        if not item.future.done():
            item.future.cancel()
        if item.queued:
            self._queue.remove(item)
            self._dequeued(item)
            self._changed()

    def _changed(self) -> None:
        self._depth_gauge.set(self._waiting)
        self._arrived.set()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._arrived.clear()
                await self._arrived.wait()
                continue
            replica = await self._pool.acquire()
            background = self._background_allowed()
            items = await self._collect(background)
            if not items:
                self._pool.release(replica)
                if not background and self._queue:  # only background items wait
                    await self._held_back()
                continue
            task = asyncio.create_task(self._execute(replica, items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _background_allowed(self) -> bool:
        """Whether the replica just taken may compute background items (``online_replicas``
        other replicas stay free, or the model has no more replicas than that)."""
        keep = self.spec.batching.online_replicas
        if not keep or time.monotonic() - self._online_at > ONLINE_QUIET_S:
            return True
        return len(self._pool.alive) <= keep or self._pool.free() >= keep

    async def _held_back(self) -> None:
        """Wait for an online item, a replica set free, or the end of online traffic
        (background items are held back)."""
        quiet_in = self._online_at + ONLINE_QUIET_S - time.monotonic()
        self._arrived.clear()
        waits = [
            asyncio.ensure_future(self._arrived.wait()),
            asyncio.ensure_future(self._pool.changed()),
        ]
        try:
            await asyncio.wait(waits, timeout=max(quiet_in, 0), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()

    async def _collect(self, background: bool = True) -> list[_Item]:
        """Wait until the batch is full or the oldest item has waited ``max_delay_ms``;
        ``background``: background items may join (else online items only)."""
        delay = self.spec.batching.max_delay_ms / 1000
        while True:
            self._expire()
            if not self._queue:
                return []
            items, full = self._fit(background)
            if not items:
                return []
            remaining = items[0].enqueued + delay - time.monotonic()
            if full or remaining <= 0:
                break
            self._arrived.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._arrived.wait()
            except TimeoutError:
                pass
        for item in items:
            self._queue.remove(item)
            self._dequeued(item)
        self._changed()
        return items

    def _fit(self, background: bool = True) -> tuple[list[_Item], bool]:
        """Items that fit one batch, in order, and whether nothing more could join it."""
        max_rows = self.spec.batching.max_batch_size
        max_tokens = self.spec.batching.max_batch_tokens
        first = next((i for i in self._queue if not i.background), None)
        if first is None and not background:
            return [], False
        first = first or self._queue[0]
        items, rows, longest = [], 0, 0
        for item in self._queue:
            if item.signature != first.signature or (item.background and not first.background):
                continue
            new_rows, new_longest = rows + item.rows, max(longest, item.cost)
            too_many_tokens = max_tokens is not None and new_longest * new_rows > max_tokens
            if items and (new_rows > max_rows or too_many_tokens):
                return items, True
            items.append(item)
            rows, longest = new_rows, new_longest
        return items, rows >= max_rows

    def _expire(self) -> None:
        """Drop what must not run: items past their deadline (504), items whose client left,
        chunks of a request that already failed."""
        now = time.monotonic()
        gone = [i for i in self._queue if i.future.done() or i.deadline <= now or _orphan(i)]
        for item in gone:
            self._queue.remove(item)
            self._dequeued(item)
            if item.future.done():
                continue
            if item.deadline <= now:
                item.future.set_exception(
                    DeadlineExceeded(
                        f"model {self.spec.name!r}: request expired in the queue "
                        f"(limits.timeout_s={self.spec.limits.timeout_s})"
                    )
                )
            else:
                item.future.cancel()
        if gone:
            self._changed()

    async def _execute(self, replica, items: list[_Item]) -> None:
        started = time.monotonic()
        queue_hist = metrics.LATENCY.labels(**self._labels, stage="queue")
        waits = [started - item.enqueued for item in items]
        for wait in waits:
            queue_hist.observe(wait)
        batch, rows = _merge(items)
        metrics.BATCH_SIZE.labels(**self._labels).observe(rows)
        computed = False
        try:
            outputs = await replica.submit(batch)
            computed = True
            parts = _split(outputs, items, rows, self.spec.name)
        except AimassError as exc:
            parts = [exc] * len(items)
        finally:
            self._pool.release(replica)
        took = time.monotonic() - started
        metrics.LATENCY.labels(**self._labels, stage="compute").observe(took)
        self.stats.batch(rows, waits, took, ok=computed)
        for item, part in zip(items, parts, strict=True):
            if item.future.done():
                continue
            if isinstance(part, BaseException):
                item.future.set_exception(part)
                if item.request is not None:
                    item.request.failed = True
            else:
                item.future.set_result(part)

    async def close(self, error: AimassError) -> None:
        """Stop batching and fail everything still queued with ``error``."""
        self._runner.cancel()
        for item in self._queue:
            item.queued = False
            if not item.future.done():
                item.future.set_exception(error)
        self._queue.clear()
        self._waiting = 0
        self._changed()
        await asyncio.gather(self._runner, return_exceptions=True)


def _orphan(item: _Item) -> bool:
    return item.request is not None and item.request.failed


def _max_cost(payload: Payload) -> int:
    cost = payload.get(COST_KEY)
    return int(cost.max()) if cost is not None and len(cost) else 0


def _signature(payload: Payload) -> tuple:
    """Requests merge only when every tensor agrees on dtype and per-row shape."""
    return tuple((k, v.dtype.str, v.shape[1:]) for k, v in sorted(payload.items()) if k != COST_KEY)


def _merge(items: list[_Item]) -> tuple[Payload, int]:
    rows = sum(i.rows for i in items)
    keys = [k for k in items[0].payload if k != COST_KEY]
    if len(items) == 1:
        return {k: items[0].payload[k] for k in keys}, rows
    return {k: np.concatenate([i.payload[k] for i in items]) for k in keys}, rows


def _split(outputs: Payload, items: list[_Item], rows: int, name: str) -> list:
    """Cut the batch's outputs back into one payload (or error) per request."""
    errors = outputs.pop(ROW_ERRORS, None)
    for key, value in outputs.items():
        if len(value) != rows:
            raise ModelFailed(
                f"model {name!r} returned {len(value)} rows of {key!r} for a batch of {rows}"
            )
    parts: list = []
    start = 0
    for item in items:
        end = start + item.rows
        row_errors = [e for e in errors[start:end] if e] if errors is not None else []
        if row_errors:
            first = row_errors[0]
            parts.append(first if isinstance(first, AimassError) else InvalidInput(str(first)))
        else:
            parts.append({k: v[start:end] for k, v in outputs.items()})
        start = end
    return parts
