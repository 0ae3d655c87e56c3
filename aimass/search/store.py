"""Open vector stores in memory: each store's HNSW index, BM25 index and chunk table.

A store is opened on first use after a start: its chunks are read from the database, its
index files are checked against them (rebuilt when they disagree, see ``index.py``), and its
BM25 index is built. A store holding image files has a second HNSW index, of their image
vectors (another model, another width), keyed by the id of each image's first chunk.
Changes go to the database first and to memory second, under the store's lock,
so memory never holds a chunk the database lacks:

- ``add_file`` runs the file's ``complete`` transaction, then adds its chunks to both indexes;
- ``remove_file`` hides the file from searches at once (before any await), deletes it from the
  database, then takes its chunks out of both indexes.

Searches take no store lock: they read the indexes as they are (each index serializes its
own usearch calls, in worker threads: ``index.py``) and keep only chunks that the chunk table
holds and whose files are not hidden. A file's chunks enter the chunk table only after they
are in the index, and leave it as soon as they are out of it, so a search that overlaps a
change returns a chunk only once its file is acknowledged, and never once its removal is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aimass.search import records
from aimass.search.filters import matches
from aimass.search.index import VectorIndex, open_index
from aimass.search.keyword import BM25

log = logging.getLogger("aimass.search")

OVERSAMPLE = 4
"""A filtered vector search asks the index for this many times the results it needs, and
again with four times as many while filters drop too many (up to the whole index)."""


@dataclass
class Hit:
    """One chunk found: its id, file, text and score."""

    chunk_id: int
    file_id: str
    text: str
    score: float


@dataclass
class LiveStore:
    """One store's indexes and chunk table in memory."""

    id: str
    path: Path
    index: VectorIndex | None
    bm25: BM25 = field(default_factory=BM25)
    chunks: dict[int, tuple[str, str]] = field(default_factory=dict)
    """chunk id -> (file id, text)"""
    attributes: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    """file id -> attributes, of every file whose chunks may be found"""
    hidden: set[str] = field(default_factory=set)
    """files being removed: never returned, even before their chunks leave the indexes"""
    images: VectorIndex | None = None
    """image vectors of the store's image files (``None`` until its first image)"""
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def _keep(self, flt: Mapping[str, Any] | None) -> Callable[[int], bool]:
        def keep(key: int) -> bool:
            entry = self.chunks.get(key)
            if entry is None or entry[0] in self.hidden:
                return False
            attributes = self.attributes.get(entry[0])
            return attributes is not None and matches(flt, attributes)

        return keep

    def _hits(self, keys: np.ndarray, scores: np.ndarray, flt) -> list[Hit]:
        """The index's answer as hits, without the chunks that ``_keep`` would drop (one pass
        over plain Python values: a search's answer is built per request on the event loop)."""
        hits = []
        for key, score in zip(keys.tolist(), scores.tolist(), strict=True):
            entry = self.chunks.get(key)
            if entry is None or entry[0] in self.hidden:
                continue
            attributes = self.attributes.get(entry[0])
            if attributes is None or (flt is not None and not matches(flt, attributes)):
                continue
            hits.append(Hit(key, entry[0], entry[1], score))
        return hits

    async def vector_search(self, vector: np.ndarray, limit: int, flt=None) -> list[Hit]:
        """The ``limit`` nearest chunks that pass ``flt``, by cosine similarity."""
        return await self._nearest(self.index, vector, limit, flt)

    async def image_search(self, vector: np.ndarray, limit: int, flt=None) -> list[Hit]:
        """The ``limit`` image files nearest to an image's vector (their first chunks)."""
        return await self._nearest(self.images, vector, limit, flt)

    async def _nearest(self, index: VectorIndex | None, vector, limit: int, flt) -> list[Hit]:
        if index is None or limit <= 0:
            return []
        k = limit if flt is None and not self.hidden else limit * OVERSAMPLE
        while True:
            keys, scores = await index.nearest(vector, k)
            hits = self._hits(keys, scores, flt)
            if len(hits) >= limit or k >= len(index):
                return hits[:limit]
            k *= OVERSAMPLE

    def keyword_search(self, query: str, limit: int, flt=None) -> list[Hit]:
        """The ``limit`` best chunks by BM25 that pass ``flt``."""
        found = self.bm25.search(query, limit, self._keep(flt))
        return [self.hit(key, score) for key, score in found]

    def hit(self, key: int, score: float) -> Hit:
        file_id, text = self.chunks[key]
        return Hit(key, file_id, text, score)

    async def _add_memory(
        self, file_id: str, attributes, keys: np.ndarray, chunks: list[records.NewChunk]
    ) -> None:
        """Index a committed file's chunks (worker threads), then enter them in the table."""
        texts = [c.text for c in chunks]
        if self.index is not None and len(keys):
            await asyncio.to_thread(self.index.add, keys, np.stack([c.vector for c in chunks]))
        pictured = [i for i, c in enumerate(chunks) if c.image_vector is not None]
        if self.images is not None and pictured:
            vectors = np.stack([chunks[i].image_vector for i in pictured])
            await asyncio.to_thread(self.images.add, keys[pictured], vectors)
        self.attributes[file_id] = attributes
        pairs = [(int(k), t) for k, t in zip(keys, texts, strict=True)]
        self.bm25.add(pairs)
        for key, text in pairs:
            self.chunks[key] = (file_id, text)

    async def _remove_memory(self, file_id: str) -> None:
        """Take a deleted file's chunks out of the table, then out of the indexes."""
        pairs = [(k, t) for k, (f, t) in self.chunks.items() if f == file_id]
        keys = np.array([k for k, _ in pairs], dtype=np.int64)
        self.bm25.remove(pairs)
        for key, _ in pairs:
            del self.chunks[key]
        self.attributes.pop(file_id, None)
        for index in (self.index, self.images):
            if index is not None and len(keys):
                await asyncio.to_thread(index.remove, keys)  # keys it never held are skipped


class Stores:
    """The open stores of one server; indexes under ``root`` (``AIMASS_HOME/stores``)."""

    def __init__(self, url: str, root: Path):
        self.url = url
        self.root = root
        self._open: dict[str, LiveStore] = {}
        self._opening: dict[str, asyncio.Future[LiveStore]] = {}

    def path(self, store_id: str) -> Path:
        return self.root / f"{store_id}.usearch"

    def image_path(self, store_id: str) -> Path:
        return self.root / f"{store_id}.images.usearch"

    async def get(self, store: records.Store) -> LiveStore:
        """The store, opened (and its index checked or rebuilt) on first use."""
        live = self._open.get(store.id)
        if live is not None:
            return live
        pending = self._opening.get(store.id)
        if pending is None:
            pending = asyncio.ensure_future(asyncio.to_thread(self._load, store))
            self._opening[store.id] = pending
            try:
                self._open[store.id] = await asyncio.shield(pending)
            finally:
                self._opening.pop(store.id, None)
            return self._open[store.id]
        return await asyncio.shield(pending)

    def _load(self, store: records.Store) -> LiveStore:
        """Read a store from the database and check (or rebuild) its index; a worker thread."""
        path = self.path(store.id)
        index = None
        if store.dimensions:
            index, _ = open_index(
                path,
                store.dimensions,
                records.chunk_ids(self.url, store.id),
                lambda: records.chunk_vectors(self.url, store.id, store.dimensions),
            )
        live = LiveStore(store.id, path, index)
        if store.image_dimensions:
            live.images, _ = open_index(
                self.image_path(store.id),
                store.image_dimensions,
                records.chunk_ids(self.url, store.id, images=True),
                lambda: records.chunk_vectors(
                    self.url, store.id, store.image_dimensions, images=True
                ),
            )
        for f in records.files_of(self.url, store.id):
            if f.status == records.COMPLETED:
                live.attributes[f.file_id] = f.attributes
        rows = records.chunk_texts(self.url, store.id)
        live.bm25.add((key, text) for key, _, text in rows)
        live.chunks = {key: (file_id, text) for key, file_id, text in rows}
        return live

    async def add_file(
        self,
        store: records.Store,
        file_id: str,
        attributes: Mapping[str, Any],
        chunks: list[records.NewChunk],
        usage: int,
    ) -> bool:
        """Commit a file's chunks (``records.complete_file``) and index them; False when the
        file left ``in_progress`` meanwhile (nothing is written then)."""
        live = await self.get(store)
        async with live.lock:
            if live.index is None and chunks:
                dims = len(chunks[0].vector)
                await asyncio.to_thread(records.update_store, self.url, store.id, dimensions=dims)
                live.index = VectorIndex(live.path, dims)
            image = next((c.image_vector for c in chunks if c.image_vector is not None), None)
            if live.images is None and image is not None:
                dims = len(image)
                await asyncio.to_thread(
                    records.update_store, self.url, store.id, image_dimensions=dims
                )
                live.images = VectorIndex(self.image_path(store.id), dims)
            keys = await asyncio.to_thread(
                records.complete_file, self.url, store.id, file_id, chunks, usage
            )
            if keys is None:
                return False
            await live._add_memory(file_id, attributes, keys, chunks)
            return True

    async def remove_file(self, store: records.Store, file_id: str) -> bool:
        """Hide the file from searches now, delete it, then drop its chunks from the indexes."""
        live = await self.get(store)
        live.hidden.add(file_id)
        try:
            async with live.lock:
                found = await asyncio.to_thread(records.delete_file, self.url, store.id, file_id)
                await live._remove_memory(file_id)
                return found
        finally:
            live.hidden.discard(file_id)

    async def set_attributes(self, store: records.Store, file_id: str, attributes) -> None:
        live = await self.get(store)
        if file_id in live.attributes:
            live.attributes[file_id] = attributes

    async def drop(self, store_id: str) -> None:
        """Forget a deleted store and its index file."""
        live = self._open.pop(store_id, None)
        if live is not None:
            async with live.lock:
                live.hidden.update(live.attributes)
        self.path(store_id).unlink(missing_ok=True)
        self.image_path(store_id).unlink(missing_ok=True)

    async def save(self) -> None:
        """Write every index changed since it was last saved (a worker thread each)."""
        for live in list(self._open.values()):
            for index in (live.index, live.images):
                if index is not None and index.dirty:
                    async with live.lock:
                        await asyncio.to_thread(index.save)

    def run(self, fn: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        """A database function of ``records`` on this registry, in a worker thread."""
        return asyncio.to_thread(fn, self.url, *args)
