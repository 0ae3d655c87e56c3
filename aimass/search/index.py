"""The HNSW index of one vector store (usearch, cosine), persisted as a file beside the registry.

The database holds every chunk's vector, so this file is a cache that can always be rebuilt:
``open_index`` loads it only when its keys are exactly the store's chunk ids in the database,
and rebuilds it from the database's vectors otherwise (a missing or torn file, a server killed
between a commit and the next save). ``save`` writes to a temporary file and renames it, so a
crash while saving leaves the previous file whole.

Searching, adding and removing run on the event loop (a search of 100,000 vectors takes well
under a millisecond); only a rebuild runs in a worker thread, before the store is served.
"""

from __future__ import annotations

import logging
import os
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

    def __len__(self) -> int:
        return len(self._index)

    def keys(self) -> np.ndarray:
        return np.sort(np.asarray(self._index.keys, dtype=np.int64))

    def add(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if len(keys):
            self._index.add(keys.astype(np.uint64), vectors.astype(np.float32, copy=False))
            self.dirty = True

    def remove(self, keys: np.ndarray) -> None:
        if len(keys):
            self._index.remove(keys.astype(np.uint64))
            self.dirty = True

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Up to ``k`` ``(ids, cosine similarities)``, nearest first."""
        if not len(self._index) or k <= 0:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        found = self._index.search(vector.astype(np.float32, copy=False), min(k, len(self)))
        return found.keys.astype(np.int64), 1.0 - found.distances

    def save(self) -> None:
        """Write the index (atomically: a temporary file renamed over the old one)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
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
