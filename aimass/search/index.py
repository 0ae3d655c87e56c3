"""The HNSW index of one vector store (usearch, cosine), persisted as a file beside the registry.

The database holds every chunk's vector, so this file is a cache that can always be rebuilt:
``open_index`` loads it only when its keys are exactly the store's chunk ids in the database,
and rebuilds it from the database's vectors otherwise (a missing or torn file, a server killed
between a commit and the next save). ``save`` writes to a temporary file and renames it, so a
crash while saving leaves the previous file whole.

Searches leave the event loop: ``nearest`` queues a query, and one worker thread at a time
runs every query queued meanwhile as one batch (``Index.search`` of a matrix, on all cores;
usearch releases the GIL while it searches), so the event loop reads and answers other requests
while an index is searched. Every call into usearch on one index holds that index's lock:
usearch's Python binding runs a single-query call, or a batch on one thread, in its thread
context 0, and two calls at once from two Python threads would share it (usearch issues #441
and #550: concurrent calls from several threads corrupt memory; #735: concurrent adds leave
nodes unreachable), and an ``add`` may grow the index's memory under a running search. A batch
of queries in one call is the concurrency usearch does support (one context per its thread).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from pathlib import Path

import numpy as np
from usearch.index import Index

log = logging.getLogger("aimass.search")

CONNECTIVITY = 16
EXPANSION_ADD = 128
EXPANSION_SEARCH = 128
"""usearch's defaults, but twice its search expansion: at 100,000 clustered 384-d vectors
(``benchmarks/bench_search.py``'s data) recall@10 was 0.909 at 64, 0.965 at 128 and 0.992 at
256 (2.7, 4.6 and 8.0 ms a query on the loaded 2-core machine; benchmarks/RESULTS.md)."""


class VectorIndex:
    """Cosine nearest neighbours over ``uint64`` chunk ids."""

    def __init__(self, path: Path, dimensions: int, index: Index | None = None):
        self.path = path
        self.dimensions = dimensions
        self._index = index or _new(dimensions)
        self.dirty = False
        self._lock = threading.Lock()
        """held by every call into usearch on this index (see the module note)"""
        self._queued: list[tuple[np.ndarray, int, asyncio.Future]] = []
        self._searching: asyncio.Task | None = None
        """the task searching the queue (referenced: the loop keeps only weak references)"""

    def __len__(self) -> int:
        return len(self._index)

    def keys(self) -> np.ndarray:
        return np.sort(np.asarray(self._index.keys, dtype=np.int64))

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys):
            with self._lock:
                self._index.add(keys.astype(np.uint64), vectors.astype(np.float32, copy=False))
            self.dirty = True

    def remove(self, keys: np.ndarray) -> None:
        if len(keys):
            with self._lock:
                self._index.remove(keys.astype(np.uint64))
            self.dirty = True

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` ``(ids, cosine similarities)``, nearest first (blocking; see ``nearest``)."""
        return self.search_many(vector[None, :], k)[0]

    def search_many(self, vectors: np.ndarray, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each row's up to ``k`` ``(ids, cosine similarities)``, in one usearch call."""
        with self._lock:
            size = len(self._index)
            if not size or k <= 0:
                return [(np.empty(0, np.int64), np.empty(0, np.float32))] * len(vectors)
            found = self._index.search(vectors.astype(np.float32, copy=False), min(k, size))
        if len(vectors) == 1:  # usearch answers a one-row matrix as one query's ``Matches``
            return [(found.keys.astype(np.int64), 1.0 - found.distances)]
        return [
            (found.keys[i, :n].astype(np.int64), 1.0 - found.distances[i, :n])
            for i, n in enumerate(found.counts)
        ]

    async def nearest(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``search`` in a worker thread, batched with the queries that wait meanwhile."""
        answer = asyncio.get_running_loop().create_future()
        self._queued.append((vector, k, answer))
        if self._searching is None:
            self._searching = asyncio.get_running_loop().create_task(self._search_queued())
        return await answer

    async def _search_queued(self) -> None:
        """Search the queued queries, a batch at a time, until none are left."""
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                matrix = np.stack([vector for vector, _, _ in batch])
                k = max(k for _, k, _ in batch)
                try:
                    found = await asyncio.to_thread(self.search_many, matrix, k)
                except Exception as exc:
                    found = [exc] * len(batch)
                for (_, wanted, answer), result in zip(batch, found, strict=True):
                    if answer.done():  # its caller left
                        continue
                    if isinstance(result, Exception):
                        answer.set_exception(result)
                    else:
                        answer.set_result((result[0][:wanted], result[1][:wanted]))
        finally:
            self._searching = None

    def save(self) -> None:
        """Write the index (atomically: a temporary file renamed over the old one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with self._lock:
            self._index.save(str(tmp))
        os.replace(tmp, self.path)
        self.dirty = False

    def delete_file(self) -> None:
        self.path.unlink(missing_ok=True)


def open_index(
    path: Path, dimensions: int, db_keys: np.ndarray, vectors: callable
) -> tuple[VectorIndex, bool]:
    """The store's index, and whether it had to be rebuilt.

    ``db_keys`` are the store's chunk ids in the database, sorted; ``vectors()`` reads them
    with their vectors (``(ids, float32 matrix)``) and is called only for a rebuild.
    """
    loaded = _load(path, dimensions)
    if loaded is not None and np.array_equal(loaded.keys(), db_keys):
        return loaded, False
    reason = "missing" if loaded is None else f"{len(loaded)} entries, the database {len(db_keys)}"
    log.info("rebuilding the vector index %s from the database (%s)", path.name, reason)
    index = VectorIndex(path, dimensions)
    keys, matrix = vectors()
    index.add(keys, matrix)
    index.save()
    return index, True


def _load(path: Path, dimensions: int) -> VectorIndex | None:
    if not path.exists():
        return None
    try:
        index = Index.restore(str(path))
    except Exception as exc:  # a torn or foreign file: rebuilt from the database
        log.warning("vector index %s is unreadable (%s); rebuilding it", path, exc)
        return None
    if index is None or index.ndim != dimensions:
        return None
    return VectorIndex(path, dimensions, index)


def _new(dimensions: int) -> Index:
    return Index(
        ndim=dimensions,
        metric="cos",
        dtype="f32",
        connectivity=CONNECTIVITY,
        expansion_add=EXPANSION_ADD,
        expansion_search=EXPANSION_SEARCH,
    )
