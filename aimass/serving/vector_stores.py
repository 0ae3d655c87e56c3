"""The work behind /v1/vector_stores, callable without HTTP.

Stores belong to the API key that created them: another key gets 404, an admin key (or a server
without auth) sees every store. Every model use goes through the pipeline with a caller's
context, so scopes, limits, usage and metrics apply: a search embeds its query as the caller;
ingestion embeds a file's chunks as the store's owner (usage counts the embedded tokens), and
holds its next request while searches run, so online traffic goes first.

A search runs up to three measurable parts (docs/vector_stores.md): vector (the store's HNSW
index), keyword (BM25), hybrid (both fused by reciprocal rank, the default), then an optional
rerank by a loaded rerank model.

Image files are read by models at ingestion: their OCR text and the classifier's top labels are
their text (so a text query finds them), and the store's image model embeds each whole for
image → image search (``query_image``); the models are settings (``vector_store_*_model``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from aimass.access.gate import Caller
from aimass.config import Settings
from aimass.errors import InvalidInput, NotFound
from aimass.files.store import ANY_OWNER, FileRecord, FileStore
from aimass.media.image import image_from_data_url
from aimass.protocols.embeddings import EmbeddingRequest, RerankRequest
from aimass.protocols.vector_stores import (
    ChunkingStrategy,
    FileBatchCreate,
    SearchRequest,
    VectorStoreCreate,
    VectorStoreFileCreate,
    VectorStoreFileUpdate,
    VectorStoreUpdate,
)
from aimass.refs import split_model
from aimass.registry.keys import list_keys
from aimass.registry.tables import utcnow
from aimass.search import records
from aimass.search.chunking import AUTO_MAX_TOKENS, Chunk, chunk_text
from aimass.search.extract import extract_text, kind_of
from aimass.search.fusion import reciprocal_rank_fusion
from aimass.search.ingest import Document, Ingestor, Work
from aimass.search.store import Hit, LiveStore, Stores
from aimass.serving.embeddings import EmbeddingsService
from aimass.serving.ocr import OcrService
from aimass.serving.pipeline import CallContext, Pipeline
from aimass.serving.vision import VisionService

CANDIDATES_PER_PART = 50
"""How many results each part (vector, keyword) hands to the fusion."""
SEARCH_FIRST_MAX_WAIT_S = 1.0
"""Ingestion holds its next embedding request while searches are running, for at most this
long (so a steady stream of searches slows ingestion down but never stops it)."""
SEARCH_QUIET_S = 1.0
"""Ingestion goes at full speed only when no search ran for this long (``Ingestor``)."""
TOUCH_INTERVAL_S = 60.0
"""``last_active_at`` is written at most this often per store (a search is not a write)."""

STORE_CACHE_S = 1.0
"""A search reuses a store's row (owner, expiry) read this recently instead of reading the
database again (a per-search read was most of an HTTP search's cost; benchmarks/RESULTS.md).
Modify and delete through this server drop the entry at once; the age bounds how long a
change made elsewhere (another server on the same database) goes unseen."""


class VectorStoreService:
    """Vector stores over the engine; one per app."""

    def __init__(
        self,
        pipeline: Pipeline,
        embeddings: EmbeddingsService,
        settings: Settings,
        files: FileStore,
        vision: VisionService,
        ocr: OcrService,
    ):
        self.pipeline = pipeline
        self.embeddings = embeddings
        self.vision = vision
        self.ocr = ocr
        self.settings = settings
        self.url = settings.resolved_database_url
        self.files = files
        self.stores = Stores(self.url, settings.home / "stores")
        self.ingestor = Ingestor(
            self.stores,
            Work(self._read, self._chunk, self._embed_for_owner, self._busy, self._embed_image),
            concurrency=settings.vector_store_ingest_concurrency,
            embed_batch=settings.vector_store_embed_batch,
            in_flight=settings.vector_store_embed_in_flight,
        )
        self._owners: dict[str, Caller] = {}
        """store id -> its owner as a caller: ingestion embeds as the store's owner"""
        self._filenames: dict[str, str] = {}
        self._touched: dict[str, float] = {}
        self._rows: dict[str, tuple[float, records.Store]] = {}
        """store id -> (when read, its row): searches' cache, see ``STORE_CACHE_S``"""
        self._tokenizers: dict[str, Tokenizer] = {}
        self._searches = 0
        self._no_searches = asyncio.Event()
        self._no_searches.set()
        self._searched_at = float("-inf")

    async def start(self) -> None:
        await self.ingestor.start()

    async def stop(self) -> None:
        await self.ingestor.stop()

    # ---- stores ------------------------------------------------------------------------------

    async def create(self, ctx: CallContext, req: VectorStoreCreate) -> dict[str, Any]:
        model = req.embedding_model or self.settings.vector_store_default_model
        await self.pipeline.resolve(ctx, *split_model(model))
        image_model = req.image_model or self._served(self.settings.vector_store_image_model)
        if req.image_model:
            await self.pipeline.resolve(ctx, *split_model(req.image_model))
        chunking = self._chunking(model, req.chunking_strategy)
        file_ids = list(dict.fromkeys(req.file_ids or []))
        for file_id in file_ids:
            await self._file(ctx, file_id)
        store = await self.stores.run(
            lambda url: records.create_store(
                url,
                owner_key_id=_key_id(ctx.caller),
                name=req.name or "",
                embedding_model=model,
                metadata=req.metadata or {},
                expires_after_days=req.expires_after.days if req.expires_after else None,
                image_model=image_model,
            )
        )
        if store.owner_key_id == _key_id(ctx.caller):
            self._owners[store.id] = ctx.caller
        for file_id in file_ids:
            await self._add(ctx, store, file_id, {}, chunking)
        return await self._store_answer(store)

    async def list(self, ctx: CallContext, **page: Any) -> dict[str, Any]:
        owner = True if self._admin(ctx) else _key_id(ctx.caller)
        found = await self.stores.run(lambda url: records.list_stores(url, owner, **page))
        data = await self._store_answers(found.items)
        return _list(data, found.has_more)

    async def retrieve(self, ctx: CallContext, store_id: str) -> dict[str, Any]:
        return await self._store_answer(await self._owned(ctx, store_id))

    async def modify(self, ctx: CallContext, store_id: str, req: VectorStoreUpdate) -> dict:
        await self._owned(ctx, store_id)
        changes: dict[str, Any] = {}
        if "name" in req.model_fields_set and req.name is not None:
            changes["name"] = req.name
        if req.metadata is not None:
            changes["metadata"] = req.metadata
        if "expires_after" in req.model_fields_set:
            changes["expires_after_days"] = req.expires_after.days if req.expires_after else None
        self._rows.pop(store_id, None)
        store = await self.stores.run(
            lambda url: records.update_store(url, store_id, touch=True, **changes)
        )
        self._rows.pop(store_id, None)
        return await self._store_answer(store)

    async def delete(self, ctx: CallContext, store_id: str) -> dict[str, Any]:
        store = await self._owned(ctx, store_id)
        for f in await self.stores.run(records.files_of, store.id):
            self.ingestor.cancel(store.id, f.file_id)
        await self.stores.drop(store.id)
        await self.stores.run(records.delete_store, store.id)
        self._owners.pop(store.id, None)
        self._touched.pop(store.id, None)
        self._rows.pop(store.id, None)
        return {"id": store.id, "object": "vector_store.deleted", "deleted": True}

    # ---- files -------------------------------------------------------------------------------

    async def add_file(self, ctx: CallContext, store_id: str, req: VectorStoreFileCreate) -> dict:
        store = await self._owned(ctx, store_id)
        await self._file(ctx, req.file_id)
        chunking = self._chunking(store.embedding_model, req.chunking_strategy)
        f = await self._add(ctx, store, req.file_id, req.attributes or {}, chunking)
        return _file_answer(f)

    async def list_files(self, ctx: CallContext, store_id: str, **page: Any) -> dict[str, Any]:
        await self._owned(ctx, store_id)
        found = await self.stores.run(lambda url: records.list_files(url, store_id, **page))
        return _list([_file_answer(f) for f in found.items], found.has_more)

    async def get_file(self, ctx: CallContext, store_id: str, file_id: str) -> dict[str, Any]:
        await self._owned(ctx, store_id)
        return _file_answer(await self._store_file(store_id, file_id))

    async def update_file(
        self, ctx: CallContext, store_id: str, file_id: str, req: VectorStoreFileUpdate
    ) -> dict[str, Any]:
        store = await self._owned(ctx, store_id)
        attributes = req.attributes or {}
        f = await self.stores.run(records.set_attributes, store_id, file_id, attributes)
        if f is None:
            raise _no_file(store_id, file_id)
        await self.stores.set_attributes(store, file_id, attributes)
        return _file_answer(f)

    async def delete_file(self, ctx: CallContext, store_id: str, file_id: str) -> dict[str, Any]:
        store = await self._owned(ctx, store_id)
        self.ingestor.cancel(store_id, file_id)
        if not await self.stores.remove_file(store, file_id):
            raise _no_file(store_id, file_id)
        return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}

    async def file_content(self, ctx: CallContext, store_id: str, file_id: str) -> dict:
        await self._owned(ctx, store_id)
        await self._store_file(store_id, file_id)
        texts = await self.stores.run(records.file_chunks, store_id, file_id)
        return {
            "object": "vector_store.file_content.page",
            "data": [{"type": "text", "text": t} for t in texts],
            "has_more": False,
            "next_page": None,
        }

    # ---- file batches ------------------------------------------------------------------------

    async def create_batch(self, ctx: CallContext, store_id: str, req: FileBatchCreate) -> dict:
        store = await self._owned(ctx, store_id)
        file_ids = list(dict.fromkeys(req.file_ids))
        for file_id in file_ids:
            await self._file(ctx, file_id)
        chunking = self._chunking(store.embedding_model, req.chunking_strategy)
        batch = await self.stores.run(records.create_batch, store_id)
        for file_id in file_ids:
            await self._add(ctx, store, file_id, req.attributes or {}, chunking, batch.id)
        return await self._batch_answer(batch)

    async def get_batch(self, ctx: CallContext, store_id: str, batch_id: str) -> dict:
        await self._owned(ctx, store_id)
        return await self._batch_answer(await self._batch(store_id, batch_id))

    async def cancel_batch(self, ctx: CallContext, store_id: str, batch_id: str) -> dict:
        await self._owned(ctx, store_id)
        batch = await self._batch(store_id, batch_id)
        for file_id in await self.stores.run(records.cancel_batch, store_id, batch_id):
            self.ingestor.cancel(store_id, file_id)
        return await self._batch_answer(await self._batch(store_id, batch.id))

    async def batch_files(self, ctx: CallContext, store_id: str, batch_id: str, **page) -> dict:
        await self._owned(ctx, store_id)
        await self._batch(store_id, batch_id)
        found = await self.stores.run(
            lambda url: records.list_files(url, store_id, batch_id=batch_id, **page)
        )
        return _list([_file_answer(f) for f in found.items], found.has_more)

    # ---- search ------------------------------------------------------------------------------

    async def search(self, ctx: CallContext, store_id: str, req: SearchRequest) -> dict:
        if req.rewrite_query:
            raise InvalidInput(
                "rewrite_query is not supported by this server; send the query as it should be "
                "searched",
                param="rewrite_query",
            )
        self._searches += 1
        self._no_searches.clear()
        try:
            return await self._search(ctx, store_id, req)
        finally:
            self._searches -= 1
            self._searched_at = time.monotonic()
            if not self._searches:
                self._no_searches.set()

    async def _search(self, ctx: CallContext, store_id: str, req: SearchRequest) -> dict:
        store = await self._owned(ctx, store_id, cached=True)
        if _expired(store):
            raise InvalidInput(f"vector store {store_id!r} has expired", param="vector_store_id")
        live = await self.stores.get(store)
        queries, flt, limit = req.queries(), req.filter_dict(), req.max_num_results
        if req.rerank_model and not queries:
            raise InvalidInput("rerank_model needs a text query", param="rerank_model")
        wanted = max(limit, req.rerank_candidates) if req.rerank_model else limit
        hits = []
        if queries:
            hits = await self._find(
                ctx, store, live, req.search_mode, queries, flt, wanted, req.query_vector
            )
        if req.query_image is not None:
            hits = await self._with_images(ctx, store, live, req.query_image, hits, flt, wanted)
        if req.rerank_model:
            found = hits[:wanted]
            hits = await self._rerank(ctx, req.rerank_model, " ".join(queries), found)
            if req.rerank_fusion == "rrf":
                hits = _fused_orders(found, hits)
        threshold = req.ranking_options.score_threshold if req.ranking_options else 0.0
        hits = [h for h in hits if h.score >= threshold][:limit]
        await self._touch(store.id)
        return {
            "object": "vector_store.search_results.page",
            "search_query": queries,
            "data": [await self._result(live, h) for h in hits],
            "has_more": False,
            "next_page": None,
        }

    async def _query_vectors(self, ctx, store, live: LiveStore, queries, given) -> np.ndarray:
        if given is None:
            return await self.embed(ctx, store.embedding_model, queries)
        if live.index is None or len(given) != live.index.dimensions:
            width = live.index.dimensions if live.index is not None else 0
            raise InvalidInput(
                f"query_vector has {len(given)} values; the store's vectors have {width}",
                param="query_vector",
            )
        return np.asarray([given], dtype=np.float32)

    async def _find(
        self, ctx, store, live: LiveStore, mode: str, queries, flt, n, query_vector=None
    ) -> list[Hit]:
        rankings: list[list[Hit]] = []
        if mode in ("vector", "hybrid") and live.index is not None:
            k = n if mode == "vector" else max(n, CANDIDATES_PER_PART)
            vectors = await self._query_vectors(ctx, store, live, queries, query_vector)
            rankings += [await live.vector_search(v, k, flt) for v in vectors]
        if mode in ("keyword", "hybrid"):
            k = n if mode == "keyword" else max(n, CANDIDATES_PER_PART)
            rankings += [_relative(live.keyword_search(q, k, flt)) for q in queries]
        if mode != "hybrid" and len(rankings) == 1:
            return rankings[0][:n]
        if mode != "hybrid":
            return _best_of(rankings)[:n]
        fused = reciprocal_rank_fusion([[h.chunk_id for h in r] for r in rankings])
        return [live.hit(key, score) for key, score in fused[:n] if key in live.chunks]

    async def _with_images(
        self, ctx, store: records.Store, live: LiveStore, image: str, hits, flt, n: int
    ) -> list[Hit]:
        """The image files nearest to ``image`` (by the store's image model), fused by rank
        with the text query's ``hits`` when there are any."""
        if store.image_model is None:
            raise InvalidInput(
                f"vector store {store.id!r} has no image model; create it with image_model "
                "(or serve the setting vector_store_image_model) to search by image",
                param="query_image",
            )
        data = image_from_data_url(image, param="query_image")
        try:
            vector = await self.vision.embeddings(ctx, store.image_model, [data], None)
        except InvalidInput as exc:  # the image model's words for the image: name the field
            raise InvalidInput(exc.message, param="query_image") from None
        found = await live.image_search(vector[0], max(n, CANDIDATES_PER_PART), flt)
        if not hits:
            return found[:n]
        fused = reciprocal_rank_fusion([[h.chunk_id for h in r] for r in (hits, found)])
        return [live.hit(key, score) for key, score in fused[:n] if key in live.chunks]

    async def _rerank(self, ctx: CallContext, model: str, query: str, hits: list[Hit]) -> list:
        if not hits:
            return hits
        req = RerankRequest(model=model, query=query, documents=[h.text for h in hits])
        answer = await self.embeddings.rerank(ctx, req)
        return [
            Hit(hits[r["index"]].chunk_id, hits[r["index"]].file_id, hits[r["index"]].text,
                float(np.clip(r["relevance_score"], 0.0, 1.0)))
            for r in answer["results"]
        ]  # fmt: skip

    async def embed(self, ctx: CallContext, model: str, texts: list[str]) -> np.ndarray:
        """Vectors of ``texts`` by ``model`` as ``ctx``'s caller (through the pipeline)."""
        req = EmbeddingRequest(model=model, input=texts, truncate=True)
        answer = await self.embeddings.embeddings(ctx, req)
        return np.stack([np.asarray(d["embedding"], dtype=np.float32) for d in answer["data"]])

    # ---- ingestion (see search/ingest.py) ----------------------------------------------------

    async def _add(self, ctx, store, file_id, attributes, chunking, batch_id=None):
        max_tokens, overlap = chunking
        f, new = await self.stores.run(
            lambda url: records.add_file(
                url,
                store.id,
                file_id,
                attributes=attributes,
                max_chunk_tokens=max_tokens,
                chunk_overlap_tokens=overlap,
                batch_id=batch_id,
            )
        )
        if new:
            self.ingestor.submit(store.id, file_id)
        return f

    async def _read(self, store: records.Store, file_id: str) -> Document:
        try:
            record = await asyncio.to_thread(self.files.get, file_id)
        except NotFound:
            raise InvalidInput(f"file {file_id!r} was deleted", param="file_id") from None
        data = await asyncio.to_thread(self._data, record)
        if kind_of(data, record.filename, record.content_type) != "image":
            text = await asyncio.to_thread(extract_text, data, record.filename, record.content_type)
            return Document(text)
        image = data.read_bytes() if isinstance(data, Path) else data
        text = await self._image_text(store, record.filename, image)
        return Document(text, image if store.image_model else None)

    def _data(self, record: FileRecord) -> bytes | Path:
        """The file as a local path when storage has one, else its bytes (a worker thread)."""
        path = self.files.local_path(record)
        return path if path is not None else b"".join(self.files.read(record))

    async def _image_text(self, store: records.Store, filename: str, image: bytes) -> str:
        """What a text query finds an image by: its name, the classifier's top labels and the
        OCR text, each read as the store's owner by a model the server serves."""
        ocr_model = self._served(self.settings.vector_store_ocr_model)
        label_model = self._served(self.settings.vector_store_label_model)
        if not (ocr_model or label_model or store.image_model):
            raise InvalidInput(
                f"{filename!r} is an image, and this server serves no model that reads images "
                "(settings vector_store_ocr_model, vector_store_label_model, "
                "vector_store_image_model)",
                param="file_id",
            )
        ctx = CallContext(await self._caller(store), background=True)
        lines = [filename]
        if label_model:
            top = self.settings.vector_store_image_labels
            answer = await self.vision.classify(ctx, label_model, [image], top)
            lines.append(", ".join(label["label"] for label in answer["data"][0]["labels"]))
        if ocr_model:
            read = await self.ocr.read(ctx, ocr_model, image)
            if read["text"].strip():
                lines.append(read["text"])
        return "\n".join(lines)

    async def _embed_image(self, store: records.Store, image: bytes) -> np.ndarray | None:
        if store.image_model is None:
            return None
        ctx = CallContext(await self._caller(store), background=True)
        return (await self.vision.embeddings(ctx, store.image_model, [image], None))[0]

    def _served(self, model: str) -> str | None:
        """``model`` if the server serves it (any version, any state), else ``None``."""
        return model if model and self.pipeline.serves(split_model(model)[0]) else None

    async def _chunk(self, store: records.Store, f: records.StoreFile, text: str) -> list[Chunk]:
        tokenizer = self._tokenizer(store.embedding_model)
        return await asyncio.to_thread(
            chunk_text, text, tokenizer, f.max_chunk_tokens, f.chunk_overlap_tokens
        )

    async def _embed_for_owner(self, store: records.Store, texts: list[str]) -> np.ndarray:
        """Ingestion's embedding request: after running searches (see
        ``SEARCH_FIRST_MAX_WAIT_S``), as the store's owner."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(SEARCH_FIRST_MAX_WAIT_S):
                await self._no_searches.wait()
        ctx = CallContext(await self._caller(store), background=True)
        return await self.embed(ctx, store.embedding_model, texts)

    def _busy(self, store: records.Store) -> bool:
        """Searches run now, or one ended less than ``SEARCH_QUIET_S`` ago."""
        return bool(self._searches) or time.monotonic() - self._searched_at < SEARCH_QUIET_S

    async def _caller(self, store: records.Store) -> Caller:
        return self._owners.get(store.id) or await self._owner(store)

    async def _owner(self, store: records.Store) -> Caller:
        """The store's owner as a caller (after a restart: found by its key id)."""
        if store.owner_key_id is None:
            caller = Caller(None, "ingestion")
        else:
            keys = await asyncio.to_thread(list_keys, self.url)
            key = next((k for k in keys if k.id == store.owner_key_id), None)
            if key is None:
                raise NotFound(f"the API key that owns vector store {store.id!r} is gone")
            caller = Caller(key, "ingestion")
        self._owners[store.id] = caller
        return caller

    def _tokenizer(self, model: str) -> Tokenizer:
        dep = self.pipeline.manager.get(*split_model(model))
        source = Path(dep.spec.source)
        folder = source if source.is_dir() else source.parent
        key = str(folder)
        if key not in self._tokenizers:
            path = folder / "tokenizer.json"
            if not path.exists():
                raise InvalidInput(
                    f"embedding model {model!r} has no tokenizer.json to chunk text with",
                    param="embedding_model",
                )
            self._tokenizers[key] = Tokenizer.from_file(str(path))
        return self._tokenizers[key]

    def _chunking(self, model: str, strategy: ChunkingStrategy | None) -> tuple[int, int]:
        """(max tokens, overlap) of a file: ``auto`` is OpenAI's 800/400, shrunk to what the
        embedding model takes; ``static`` must fit the model."""
        dep = self.pipeline.manager.get(*split_model(model))
        if dep.spec.task != "embedding":
            raise InvalidInput(
                f"model {model!r} has task {dep.spec.task!r}; a vector store needs an "
                "'embedding' model",
                param="embedding_model",
            )
        limit = int(dep.info.get("max_length") or AUTO_MAX_TOKENS + 2) - 2
        if strategy is None or strategy.type == "auto":
            size = min(AUTO_MAX_TOKENS, limit)
            return size, size // 2
        static = strategy.static
        if static is None:
            raise InvalidInput(
                "a static chunking strategy needs 'static'", param="chunking_strategy"
            )
        if static.max_chunk_size_tokens > limit:
            raise InvalidInput(
                f"max_chunk_size_tokens {static.max_chunk_size_tokens} is more than the "
                f"embedding model {model!r} takes ({limit} tokens)",
                param="chunking_strategy.static.max_chunk_size_tokens",
            )
        if static.chunk_overlap_tokens > static.max_chunk_size_tokens // 2:
            raise InvalidInput(
                "chunk_overlap_tokens must be at most half of max_chunk_size_tokens",
                param="chunking_strategy.static.chunk_overlap_tokens",
            )
        return static.max_chunk_size_tokens, static.chunk_overlap_tokens

    # ---- lookups and answers -----------------------------------------------------------------

    def _admin(self, ctx: CallContext) -> bool:
        return self.pipeline.gate.is_admin(ctx.caller)

    async def _owned(self, ctx: CallContext, store_id: str, cached: bool = False) -> records.Store:
        """The store if ``ctx``'s caller may use it (404 otherwise); ``cached``: a row read
        within ``STORE_CACHE_S`` will do (searches)."""
        store = self._row(store_id) if cached else None
        if store is None:
            store = await self.stores.run(records.get_store, store_id)
            if store is not None:
                self._rows[store_id] = (time.monotonic(), store)
        if store is None or not (self._admin(ctx) or store.owner_key_id == _key_id(ctx.caller)):
            raise NotFound(f"no vector store {store_id!r}", param="vector_store_id")
        return store

    def _row(self, store_id: str) -> records.Store | None:
        entry = self._rows.get(store_id)
        if entry is None or time.monotonic() - entry[0] > STORE_CACHE_S:
            return None
        return entry[1]

    async def _file(self, ctx: CallContext, file_id: str) -> FileRecord:
        owner = ANY_OWNER if self._admin(ctx) else _key_id(ctx.caller)
        return await asyncio.to_thread(self.files.get, file_id, owner)

    async def _store_file(self, store_id: str, file_id: str) -> records.StoreFile:
        f = await self.stores.run(records.get_file, store_id, file_id)
        if f is None:
            raise _no_file(store_id, file_id)
        return f

    async def _batch(self, store_id: str, batch_id: str) -> records.Batch:
        batch = await self.stores.run(records.get_batch, store_id, batch_id)
        if batch is None:
            raise NotFound(f"no file batch {batch_id!r} in {store_id!r}", param="batch_id")
        return batch

    async def _touch(self, store_id: str) -> None:
        now = time.monotonic()
        if now - self._touched.get(store_id, -TOUCH_INTERVAL_S) >= TOUCH_INTERVAL_S:
            self._touched[store_id] = now
            await self.stores.run(lambda url: records.update_store(url, store_id, touch=True))

    async def _result(self, live: LiveStore, hit: Hit) -> dict[str, Any]:
        filename = self._filenames.get(hit.file_id)
        if filename is None:
            try:
                filename = (await asyncio.to_thread(self.files.get, hit.file_id)).filename
            except NotFound:
                filename = ""  # the file was deleted from /v1/files; its chunks remain
            self._filenames[hit.file_id] = filename
        return {
            "file_id": hit.file_id,
            "filename": filename,
            "score": hit.score,
            "attributes": dict(live.attributes.get(hit.file_id, {})),
            "content": [{"type": "text", "text": hit.text}],
        }

    async def _store_answer(self, store: records.Store) -> dict[str, Any]:
        return (await self._store_answers([store]))[0]

    async def _store_answers(self, stores: list[records.Store]) -> list[dict[str, Any]]:
        ids = [s.id for s in stores]
        counts = await self.stores.run(records.file_counts, ids)
        sizes = await self.stores.run(records.usage_bytes, ids)
        return [_store_dict(s, _counts(counts[s.id]), sizes[s.id]) for s in stores]

    async def _batch_answer(self, batch: records.Batch) -> dict[str, Any]:
        counts = await self.stores.run(records.file_counts, [batch.store_id], batch.id)
        file_counts = _counts(counts[batch.store_id])
        if batch.cancelled:
            status = "cancelled"
        elif file_counts["in_progress"]:
            status = "in_progress"
        else:
            status = "completed"
        return {
            "id": batch.id,
            "object": "vector_store.files_batch",
            "created_at": _ts(batch.created_at),
            "vector_store_id": batch.store_id,
            "status": status,
            "file_counts": file_counts,
        }


def _key_id(caller: Caller | None) -> int | None:
    return caller.key.id if caller is not None and caller.key is not None else None


def _no_file(store_id: str, file_id: str) -> NotFound:
    return NotFound(f"no file {file_id!r} in vector store {store_id!r}", param="file_id")


def _ts(value: datetime) -> int:
    """Unix seconds of a naive UTC time (how the registry stores times)."""
    return int(value.replace(tzinfo=UTC).timestamp())


def _expires_at(store: records.Store):
    if store.expires_after_days is None:
        return None
    return store.last_active_at + timedelta(days=store.expires_after_days)


def _expired(store: records.Store) -> bool:
    at = _expires_at(store)
    return at is not None and at <= utcnow()


def _counts(by_status: dict[str, int]) -> dict[str, int]:
    counts = {s: by_status.get(s, 0) for s in records.FILE_STATUSES}
    return {**counts, "total": sum(counts.values())}


def _store_dict(store: records.Store, counts: dict[str, int], size: int) -> dict[str, Any]:
    if _expired(store):
        status = "expired"
    else:
        status = "in_progress" if counts["in_progress"] else "completed"
    expires = _expires_at(store)
    return {
        "id": store.id,
        "object": "vector_store",
        "created_at": _ts(store.created_at),
        "name": store.name,
        "usage_bytes": size,
        "file_counts": counts,
        "status": status,
        "expires_after": (
            {"anchor": "last_active_at", "days": store.expires_after_days}
            if store.expires_after_days
            else None
        ),
        "expires_at": _ts(expires) if expires else None,
        "last_active_at": _ts(store.last_active_at),
        "metadata": store.metadata,
        "embedding_model": store.embedding_model,
        "image_model": store.image_model,
    }


def _file_answer(f: records.StoreFile) -> dict[str, Any]:
    error = {"code": f.error_code, "message": f.error_message or ""} if f.error_code else None
    return {
        "id": f.file_id,
        "object": "vector_store.file",
        "usage_bytes": f.usage_bytes,
        "created_at": _ts(f.created_at),
        "vector_store_id": f.store_id,
        "status": f.status,
        "last_error": error,
        "chunking_strategy": {
            "type": "static",
            "static": {
                "max_chunk_size_tokens": f.max_chunk_tokens,
                "chunk_overlap_tokens": f.chunk_overlap_tokens,
            },
        },
        "attributes": f.attributes,
    }


def _list(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }


def _fused_orders(first: list[Hit], second: list[Hit]) -> list[Hit]:
    """The same hits in the reciprocal-rank fusion of two orders, scored by the fusion."""
    by_id = {h.chunk_id: h for h in first}
    fused = reciprocal_rank_fusion([[h.chunk_id for h in first], [h.chunk_id for h in second]])
    return [Hit(key, by_id[key].file_id, by_id[key].text, score) for key, score in fused]


def _relative(hits: list[Hit]) -> list[Hit]:
    """BM25 scores divided by the best one, so keyword scores lie in (0, 1] too."""
    if not hits or hits[0].score <= 0:
        return hits
    top = hits[0].score
    return [Hit(h.chunk_id, h.file_id, h.text, h.score / top) for h in hits]


def _best_of(rankings: list[list[Hit]]) -> list[Hit]:
    """Several queries in one mode: each chunk with its best score, best first."""
    best: dict[int, Hit] = {}
    for ranking in rankings:
        for hit in ranking:
            if hit.chunk_id not in best or hit.score > best[hit.chunk_id].score:
                best[hit.chunk_id] = hit
    return sorted(best.values(), key=lambda h: -h.score)
