"""Background ingestion of vector store files: read, extract, chunk, embed, commit.

Bounded: at most ``concurrency`` files are worked on at once (``AIMASS_VECTOR_STORE_INGEST_
CONCURRENCY``); the rest wait in a queue of ``(store, file)`` keys whose truth is the database
(a file is ``in_progress`` until its chunks are committed). Cancellable: deleting a file or
cancelling its batch cancels its task. Resumable: ``start`` queues every file still
``in_progress``, so a server stopped or killed mid-file ingests it again from the start; nothing
of it was committed before (see ``records.complete_file``).

Online traffic first: a file is embedded in small batches (``embed_batch`` chunks, at most
``in_flight`` requests at a time per file) through the same pipeline as every other call, so a
search's query embedding waits behind at most a few small batches. Several requests in flight
let the model's batcher merge them into full batches (one at a time left the model idle between
a request's answer and the next request), and several files at once (``concurrency``) keep
every replica busy: the batcher packs the requests of all of them into its batches (up to the
model's ``max_batch_size`` and ``max_batch_tokens``), and one file's extraction and commit run
while the others' chunks are embedded. One file alone could not: the built-in MiniLM's batches
hold 32 chunks of 254 tokens (8192 tokens), about one file of ``bench_ingest.py``, so with one
file at a time a second replica stayed idle. While searches run (``Work.busy``), the ingestor
as a whole goes on one request of ``BUSY_BATCH`` chunks at a time, however many files it is
working on: a search then waits behind one tiny batch, not several big ones
(benchmarks/bench_ingest.py measures both sides).

How a file becomes text depends on its kind (``Work.read``): documents are extracted, image
files are read by models (their OCR text and top labels, so a text query finds them) and also
embedded whole by the store's image model, a vector kept on the image's first chunk for image
search.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from aimass.errors import AimassError, InvalidInput, TooManyRequests, Unavailable
from aimass.search import records
from aimass.search.chunking import Chunk
from aimass.search.store import Stores

log = logging.getLogger("aimass.search")

Key = tuple[str, str]
"""(store id, file id)"""

BUSY_BATCH = 2
"""Chunks per embedding request while searches run (see the module note)."""

RETRY_S = 300.0
"""How long a file waits for its embedding model (still loading after a start, queue full,
replica restarting) before it fails; retries back off from 0.5 s to 10 s."""


@dataclass(frozen=True)
class Document:
    """A file as ingestion indexes it: its text, and for an image file the image itself."""

    text: str
    image: bytes | None = None


@dataclass(frozen=True)
class Work:
    """What ingestion needs from the layers above (the service provides it)."""

    read: Callable[[records.Store, str], Awaitable[Document]]
    """A file's text (read from file storage, extracted by its kind, or read off an image by
    models); InvalidInput or NotFound when it has none."""
    chunk: Callable[[records.Store, records.StoreFile, str], Awaitable[list[Chunk]]]
    """The text cut in the store's embedding model's tokens."""
    embed: Callable[[records.Store, list[str]], Awaitable[np.ndarray]]
    """Vectors of texts by the store's embedding model, as the store's owner."""
    busy: Callable[[records.Store], bool]
    """Whether online work (searches) wants the store's embedding model now: ingestion then
    sends one tiny request at a time."""
    embed_image: Callable[[records.Store, bytes], Awaitable[np.ndarray | None]]
    """An image's vector by the store's image model, as the store's owner (``None``: the
    store has no image model)."""


class Ingestor:
    """The ingestion queue and workers of one server."""

    def __init__(
        self, stores: Stores, work: Work, *, concurrency: int, embed_batch: int, in_flight: int
    ):
        self.stores = stores
        self.work = work
        self.concurrency = concurrency
        self.embed_batch = embed_batch
        self.in_flight = in_flight
        self._queue: asyncio.Queue[Key] | None = None
        self._queued: set[Key] = set()
        self._running: dict[Key, asyncio.Task] = {}
        self._workers: list[asyncio.Task] = []
        self._busy_turn = asyncio.Lock()
        """held by the one request in flight while searches run (across every file)"""
        self.idle = asyncio.Event()

    async def start(self) -> None:
        """Start the workers and queue every file left ``in_progress`` (resume)."""
        self._queue = asyncio.Queue()
        self._workers = [asyncio.create_task(self._worker()) for _ in range(self.concurrency)]
        for f in await self.stores.run(records.in_progress):
            self.submit(f.store_id, f.file_id)
        if not self._queued:
            self.idle.set()

    async def stop(self) -> None:
        """Cancel the workers (files in progress stay ``in_progress``) and save the indexes."""
        for task in [*self._running.values(), *self._workers]:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._workers.clear()
        await self.stores.save()

    def submit(self, store_id: str, file_id: str) -> None:
        key = (store_id, file_id)
        if self._queue is None or key in self._queued:
            return
        self.idle.clear()
        self._queued.add(key)
        self._queue.put_nowait(key)

    def cancel(self, store_id: str, file_id: str) -> None:
        """Stop ingesting a file (it was deleted or its batch cancelled)."""
        task = self._running.get((store_id, file_id))
        if task is not None:
            task.cancel()

    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            key = await self._queue.get()
            task = asyncio.create_task(self._ingest(*key))
            self._running[key] = task
            try:
                await asyncio.wait([task])
            finally:
                self._running.pop(key, None)
                self._queued.discard(key)
            if not self._queued:
                await self.stores.save()
                if not self._queued:
                    self.idle.set()

    async def _ingest(self, store_id: str, file_id: str) -> None:
        store = await self.stores.run(records.get_store, store_id)
        f = await self.stores.run(records.get_file, store_id, file_id)
        if store is None or f is None or f.status != records.IN_PROGRESS:
            return
        try:
            await self._retrying(store, f)
        except asyncio.CancelledError:
            raise
        except AimassError as exc:
            code = "invalid_file" if isinstance(exc, InvalidInput) else "server_error"
            await self._fail(store, f, code, exc.message)
        except Exception as exc:  # any other failure fails the file, never the worker
            log.exception("ingesting %s into %s failed", file_id, store_id)
            await self._fail(store, f, "server_error", f"{type(exc).__name__}: {exc}")

    async def _retrying(self, store: records.Store, f: records.StoreFile) -> None:
        """``_ingest_file``, again while the model is unavailable or busy (see ``RETRY_S``)."""
        loop = asyncio.get_running_loop()
        give_up, wait = loop.time() + RETRY_S, 0.5
        while True:
            try:
                return await self._ingest_file(store, f)
            except (Unavailable, TooManyRequests):
                if loop.time() + wait > give_up:
                    raise
            await asyncio.sleep(wait)
            wait = min(wait * 2, 10.0)

    async def _ingest_file(self, store: records.Store, f: records.StoreFile) -> None:
        doc = await self.work.read(store, f.file_id)
        chunks = await self.work.chunk(store, f, doc.text)
        image = None if doc.image is None else await self.work.embed_image(store, doc.image)
        vectors = await self._embed_all(store, [c.text for c in chunks])
        new = [
            records.NewChunk(i, c.text, c.n_tokens, v, image if i == 0 else None)
            for i, (c, v) in enumerate(zip(chunks, _rows(vectors), strict=True))
        ]
        usage = sum(len(c.text.encode()) for c in chunks)
        await self.stores.add_file(store, f.file_id, f.attributes, new, usage)

    async def _embed_all(self, store: records.Store, texts: list[str]) -> list[np.ndarray]:
        """The texts' vectors, ``embed_batch`` at a time with ``in_flight`` requests at once,
        or ``BUSY_BATCH`` one at a time (for every file together) while the store is busy; the
        first error cancels the rest and is raised as it is (the retry loop reads its type)."""
        blocks: dict[int, np.ndarray] = {}

        async def embed(start: int, stop: int, busy: bool) -> None:
            if not busy:
                blocks[start] = await self.work.embed(store, texts[start:stop])
                return
            async with self._busy_turn:
                blocks[start] = await self.work.embed(store, texts[start:stop])

        pending: set[asyncio.Task] = set()
        start = 0
        try:
            while start < len(texts):
                busy = self.work.busy(store)
                window = 1 if busy else self.in_flight
                while len(pending) >= window:
                    pending = await _first_done(pending)
                stop = min(start + (BUSY_BATCH if busy else self.embed_batch), len(texts))
                pending.add(asyncio.create_task(embed(start, stop, busy)))
                start = stop
            while pending:
                pending = await _first_done(pending)
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        return [blocks[key] for key in sorted(blocks)]

    async def _fail(self, store: records.Store, f: records.StoreFile, code: str, msg: str) -> None:
        log.info("vector store %s: file %s failed (%s: %s)", store.id, f.file_id, code, msg)
        await self.stores.run(records.fail_file, store.id, f.file_id, code, msg)


async def _first_done(pending: set[asyncio.Task]) -> set[asyncio.Task]:
    """Wait for one of ``pending`` to end; raise the first error of those that ended (each one
    read, so none is reported as never retrieved); return the rest."""
    done, rest = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    errors = [task.exception() for task in done]
    for error in errors:
        if error is not None:
            raise error
    return rest


def _rows(blocks: list[np.ndarray]) -> list[np.ndarray]:
    return [row for block in blocks for row in block]
