"""The vector store rows in the registry database: stores, their files, chunks and batches.

Plain synchronous functions over ``session_scope`` (the service runs them in a worker thread),
returning frozen snapshots, never live ORM objects. The rules that make a crash lose nothing
acknowledged live here:

- a file's chunks are written in the same transaction that marks it ``completed``
  (``complete_file``), and only while it is still ``in_progress`` in its store, so a file
  deleted or cancelled meanwhile never gets chunks;
- deleting a file or a store deletes its chunks in the same transaction.
"""

from __future__ import annotations

import json
import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aimass.registry.db import session_scope
from aimass.registry.tables import (
    VectorStoreBatchRow,
    VectorStoreChunkRow,
    VectorStoreFileRow,
    VectorStoreRow,
    utcnow,
)

IN_PROGRESS, COMPLETED, FAILED, CANCELLED = "in_progress", "completed", "failed", "cancelled"
FILE_STATUSES = (IN_PROGRESS, COMPLETED, FAILED, CANCELLED)

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """``prefix`` and 24 random letters and digits, as OpenAI's ids look."""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(24))


@dataclass(frozen=True)
class Store:
    id: str
    owner_key_id: int | None
    name: str
    embedding_model: str
    dimensions: int
    image_model: str | None
    image_dimensions: int
    metadata: dict[str, str]
    expires_after_days: int | None
    created_at: datetime
    last_active_at: datetime


@dataclass(frozen=True)
class StoreFile:
    store_id: str
    file_id: str
    batch_id: str | None
    status: str
    error_code: str | None
    error_message: str | None
    attributes: dict[str, Any]
    max_chunk_tokens: int
    chunk_overlap_tokens: int
    usage_bytes: int
    created_at: datetime


@dataclass(frozen=True)
class Batch:
    id: str
    store_id: str
    cancelled: bool
    created_at: datetime


@dataclass(frozen=True)
class Page:
    """One page of a list, and whether more follow (OpenAI's ``has_more``)."""

    items: list
    has_more: bool


@dataclass(frozen=True)
class NewChunk:
    seq: int
    text: str
    tokens: int
    vector: np.ndarray
    image_vector: np.ndarray | None = None
    """An image file's own vector (its first chunk only)."""


def _store(row: VectorStoreRow) -> Store:
    return Store(
        row.id,
        row.owner_key_id,
        row.name,
        row.embedding_model,
        row.dimensions,
        row.image_model,
        row.image_dimensions or 0,
        json.loads(row.metadata_json),
        row.expires_after_days,
        row.created_at,
        row.last_active_at,
    )


def _file(row: VectorStoreFileRow) -> StoreFile:
    return StoreFile(
        row.store_id,
        row.file_id,
        row.batch_id,
        row.status,
        row.error_code,
        row.error_message,
        json.loads(row.attributes_json),
        row.max_chunk_tokens,
        row.chunk_overlap_tokens,
        row.usage_bytes,
        row.created_at,
    )


def _batch(row: VectorStoreBatchRow) -> Batch:
    return Batch(row.id, row.store_id, row.cancelled, row.created_at)


# ---- stores ----------------------------------------------------------------------------------


def create_store(
    url: str,
    *,
    owner_key_id: int | None,
    name: str,
    embedding_model: str,
    metadata: dict[str, str],
    expires_after_days: int | None,
    image_model: str | None = None,
) -> Store:
    row = VectorStoreRow(
        id=new_id("vs_"),
        owner_key_id=owner_key_id,
        name=name,
        embedding_model=embedding_model,
        dimensions=0,
        image_model=image_model,
        image_dimensions=0,
        metadata_json=json.dumps(metadata),
        expires_after_days=expires_after_days,
    )
    with session_scope(url) as s:
        s.add(row)
        s.flush()
        return _store(row)


def get_store(url: str, store_id: str) -> Store | None:
    with session_scope(url) as s:
        row = s.get(VectorStoreRow, store_id)
        return _store(row) if row is not None else None


def list_stores(
    url: str,
    owner: int | bool | None,
    limit: int,
    order: str,
    after: str | None,
    before: str | None,
) -> Page:
    """Stores of ``owner`` (a key id, ``None`` for anonymous, ``True`` for every store)."""
    with session_scope(url) as s:
        query = select(VectorStoreRow)
        if owner is not True:
            query = query.where(_owner_is(owner))
        return _page(s, query, VectorStoreRow, limit, order, after, before, _store)


def update_store(url: str, store_id: str, **changes: Any) -> Store | None:
    """Set ``name``, ``metadata``, ``expires_after_days``, ``dimensions``, ``image_dimensions``
    or ``touch`` (last active now) on a store."""
    values: dict[str, Any] = {}
    for key in ("name", "expires_after_days", "dimensions", "image_dimensions"):
        if key in changes:
            values[key] = changes[key]
    if "metadata" in changes:
        values["metadata_json"] = json.dumps(changes["metadata"])
    if changes.get("touch"):
        values["last_active_at"] = utcnow()
    with session_scope(url) as s:
        row = s.get(VectorStoreRow, store_id)
        if row is None:
            return None
        for key, value in values.items():
            setattr(row, key, value)
        s.flush()
        return _store(row)


def delete_store(url: str, store_id: str) -> bool:
    with session_scope(url) as s:
        row = s.get(VectorStoreRow, store_id)
        if row is None:
            return False
        for table in (VectorStoreChunkRow, VectorStoreFileRow, VectorStoreBatchRow):
            s.execute(delete(table).where(table.store_id == store_id))
        s.delete(row)
        return True


def file_counts(url: str, store_ids: Sequence[str], batch_id: str | None = None) -> dict:
    """``{store id: {status: count}}`` (of one batch's files when ``batch_id`` is given)."""
    with session_scope(url) as s:
        query = select(VectorStoreFileRow.store_id, VectorStoreFileRow.status, func.count()).where(
            VectorStoreFileRow.store_id.in_(list(store_ids))
        )
        if batch_id is not None:
            query = query.where(VectorStoreFileRow.batch_id == batch_id)
        query = query.group_by(VectorStoreFileRow.store_id, VectorStoreFileRow.status)
        counts: dict[str, dict[str, int]] = {sid: {} for sid in store_ids}
        for store_id, status, n in s.execute(query):
            counts[store_id][status] = n
        return counts


def usage_bytes(url: str, store_ids: Sequence[str]) -> dict[str, int]:
    with session_scope(url) as s:
        query = (
            select(VectorStoreFileRow.store_id, func.sum(VectorStoreFileRow.usage_bytes))
            .where(VectorStoreFileRow.store_id.in_(list(store_ids)))
            .group_by(VectorStoreFileRow.store_id)
        )
        found = {sid: int(n or 0) for sid, n in s.execute(query)}
        return {sid: found.get(sid, 0) for sid in store_ids}


# ---- files -----------------------------------------------------------------------------------


def add_file(
    url: str,
    store_id: str,
    file_id: str,
    *,
    attributes: dict[str, Any],
    max_chunk_tokens: int,
    chunk_overlap_tokens: int,
    batch_id: str | None = None,
) -> tuple[StoreFile, bool]:
    """The store's file (and whether it is new); adding a file twice keeps the first, also
    when two adds race (the unique constraint decides, the loser reads the winner's row)."""
    try:
        return _insert_file(url, store_id, file_id, attributes, max_chunk_tokens,
                            chunk_overlap_tokens, batch_id)  # fmt: skip
    except IntegrityError:
        found = get_file(url, store_id, file_id)
        if found is None:
            raise
        return found, False


def _insert_file(
    url, store_id, file_id, attributes, max_chunk_tokens, chunk_overlap_tokens, batch_id
) -> tuple[StoreFile, bool]:
    with session_scope(url) as s:
        row = _file_row(s, store_id, file_id)
        if row is not None:
            return _file(row), False
        row = VectorStoreFileRow(
            store_id=store_id,
            file_id=file_id,
            batch_id=batch_id,
            status=IN_PROGRESS,
            attributes_json=json.dumps(attributes),
            max_chunk_tokens=max_chunk_tokens,
            chunk_overlap_tokens=chunk_overlap_tokens,
            usage_bytes=0,
        )
        s.add(row)
        s.flush()
        return _file(row), True


def get_file(url: str, store_id: str, file_id: str) -> StoreFile | None:
    with session_scope(url) as s:
        row = _file_row(s, store_id, file_id)
        return _file(row) if row is not None else None


def list_files(
    url: str,
    store_id: str,
    *,
    status: str | None,
    batch_id: str | None,
    limit: int,
    order: str,
    after: str | None,
    before: str | None,
) -> Page:
    with session_scope(url) as s:
        query = select(VectorStoreFileRow).where(VectorStoreFileRow.store_id == store_id)
        if status is not None:
            query = query.where(VectorStoreFileRow.status == status)
        if batch_id is not None:
            query = query.where(VectorStoreFileRow.batch_id == batch_id)
        return _page(s, query, VectorStoreFileRow, limit, order, after, before, _file, "file_id")


def files_of(url: str, store_id: str) -> list[StoreFile]:
    with session_scope(url) as s:
        rows = s.scalars(select(VectorStoreFileRow).where(VectorStoreFileRow.store_id == store_id))
        return [_file(r) for r in rows]


def set_attributes(url: str, store_id: str, file_id: str, attributes: dict) -> StoreFile | None:
    with session_scope(url) as s:
        row = _file_row(s, store_id, file_id)
        if row is None:
            return None
        row.attributes_json = json.dumps(attributes)
        s.flush()
        return _file(row)


def delete_file(url: str, store_id: str, file_id: str) -> bool:
    with session_scope(url) as s:
        row = _file_row(s, store_id, file_id)
        if row is None:
            return False
        s.execute(
            delete(VectorStoreChunkRow).where(
                VectorStoreChunkRow.store_id == store_id, VectorStoreChunkRow.file_id == file_id
            )
        )
        s.delete(row)
        return True


def complete_file(
    url: str, store_id: str, file_id: str, chunks: Sequence[NewChunk], usage: int
) -> np.ndarray | None:
    """Write the file's chunks and mark it ``completed``, in one transaction; their new ids,
    or ``None`` when the file is no longer ``in_progress`` in the store (deleted, cancelled)."""
    with session_scope(url) as s:
        row = _file_row(s, store_id, file_id)
        if row is None or row.status != IN_PROGRESS:
            return None
        rows = _chunk_rows(store_id, file_id, chunks)
        s.add_all(rows)
        row.status, row.usage_bytes = COMPLETED, usage
        row.error_code = row.error_message = None
        s.flush()
        return np.array([r.id for r in rows], dtype=np.int64)


def fail_file(url: str, store_id: str, file_id: str, code: str, message: str) -> None:
    with session_scope(url) as s:
        s.execute(
            update(VectorStoreFileRow)
            .where(
                VectorStoreFileRow.store_id == store_id,
                VectorStoreFileRow.file_id == file_id,
                VectorStoreFileRow.status == IN_PROGRESS,
            )
            .values(status=FAILED, error_code=code, error_message=message[:2000])
        )


def in_progress(url: str) -> list[StoreFile]:
    """Every file still to ingest, oldest first (what a restart resumes)."""
    with session_scope(url) as s:
        rows = s.scalars(
            select(VectorStoreFileRow)
            .where(VectorStoreFileRow.status == IN_PROGRESS)
            .order_by(VectorStoreFileRow.id)
        )
        return [_file(r) for r in rows]


# ---- chunks ----------------------------------------------------------------------------------


def chunk_ids(url: str, store_id: str, images: bool = False) -> np.ndarray:
    """Ids of the store's chunks, in order: its vector index's keys, or with ``images`` those
    of the chunks that carry an image vector (its image index's keys)."""
    column = _vector_column(images)
    with session_scope(url) as s:
        ids = s.scalars(
            select(VectorStoreChunkRow.id)
            .where(VectorStoreChunkRow.store_id == store_id, column.is_not(None))
            .order_by(VectorStoreChunkRow.id)
        ).all()
        return np.array(ids, dtype=np.int64)


def chunk_vectors(
    url: str, store_id: str, dimensions: int, images: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The ids and vectors (text, or with ``images`` image vectors) to rebuild an index from."""
    column = _vector_column(images)
    with session_scope(url) as s:
        rows = s.execute(
            select(VectorStoreChunkRow.id, column).where(
                VectorStoreChunkRow.store_id == store_id, column.is_not(None)
            )
        ).all()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), dimensions)
    return ids, matrix


def _vector_column(images: bool):
    return VectorStoreChunkRow.image_vector if images else VectorStoreChunkRow.vector


def chunk_texts(url: str, store_id: str) -> list[tuple[int, str, str]]:
    """``(id, file id, text)`` of every chunk of the store."""
    with session_scope(url) as s:
        rows = s.execute(
            select(VectorStoreChunkRow.id, VectorStoreChunkRow.file_id, VectorStoreChunkRow.text)
            .where(VectorStoreChunkRow.store_id == store_id)
            .order_by(VectorStoreChunkRow.id)
        ).all()
        return [(r[0], r[1], r[2]) for r in rows]


def file_chunks(url: str, store_id: str, file_id: str) -> list[str]:
    """The file's chunk texts in order (its parsed content)."""
    with session_scope(url) as s:
        return list(
            s.scalars(
                select(VectorStoreChunkRow.text)
                .where(
                    VectorStoreChunkRow.store_id == store_id,
                    VectorStoreChunkRow.file_id == file_id,
                )
                .order_by(VectorStoreChunkRow.seq)
            )
        )


def _chunk_rows(
    store_id: str, file_id: str, chunks: Iterable[NewChunk]
) -> list[VectorStoreChunkRow]:
    """The rows of a file's chunks, each vector stored as little-endian float32 bytes."""
    return [
        VectorStoreChunkRow(
            store_id=store_id,
            file_id=file_id,
            seq=c.seq,
            text=c.text,
            tokens=c.tokens,
            vector=_float_bytes(c.vector),
            image_vector=None if c.image_vector is None else _float_bytes(c.image_vector),
        )
        for c in chunks
    ]


def _float_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def insert_chunks(url: str, store_id: str, file_id: str, chunks: Iterable[NewChunk]) -> np.ndarray:
    """Chunks written straight to a ``completed`` file (benchmarks fill stores this way)."""
    with session_scope(url) as s:
        rows = _chunk_rows(store_id, file_id, chunks)
        s.add_all(rows)
        s.flush()
        return np.array([r.id for r in rows], dtype=np.int64)


# ---- batches ---------------------------------------------------------------------------------


def create_batch(url: str, store_id: str) -> Batch:
    row = VectorStoreBatchRow(id=new_id("vsfb_"), store_id=store_id, cancelled=False)
    with session_scope(url) as s:
        s.add(row)
        s.flush()
        return _batch(row)


def get_batch(url: str, store_id: str, batch_id: str) -> Batch | None:
    with session_scope(url) as s:
        row = s.get(VectorStoreBatchRow, batch_id)
        return _batch(row) if row is not None and row.store_id == store_id else None


def cancel_batch(url: str, store_id: str, batch_id: str) -> list[str]:
    """Mark the batch cancelled and its files not yet ingested ``cancelled``; their ids."""
    with session_scope(url) as s:
        row = s.get(VectorStoreBatchRow, batch_id)
        if row is None or row.store_id != store_id:
            return []
        row.cancelled = True
        files = s.scalars(
            select(VectorStoreFileRow).where(
                VectorStoreFileRow.batch_id == batch_id,
                VectorStoreFileRow.status == IN_PROGRESS,
            )
        ).all()
        for f in files:
            f.status = CANCELLED
        return [f.file_id for f in files]


# ---- helpers ---------------------------------------------------------------------------------


def _owner_is(owner: int | None):
    if owner is None:
        return VectorStoreRow.owner_key_id.is_(None)
    return VectorStoreRow.owner_key_id == owner


def _file_row(s: Session, store_id: str, file_id: str) -> VectorStoreFileRow | None:
    return s.scalars(
        select(VectorStoreFileRow).where(
            VectorStoreFileRow.store_id == store_id, VectorStoreFileRow.file_id == file_id
        )
    ).first()


def _page(s, query, table, limit, order, after, before, snapshot, id_column: str = "id") -> Page:
    """OpenAI's cursor pagination: ``limit`` rows by ``(created_at, id)`` in ``order``,
    after (or before) the row whose id is the cursor."""
    column = getattr(table, id_column)
    key = (table.created_at, table.id)
    descending = order == "desc"
    for cursor, forward in ((after, True), (before, False)):
        if cursor is None:
            continue
        anchor = s.execute(select(*key).where(column == cursor)).first()
        if anchor is None:
            continue
        later = or_(key[0] > anchor[0], and_(key[0] == anchor[0], key[1] > anchor[1]))
        earlier = or_(key[0] < anchor[0], and_(key[0] == anchor[0], key[1] < anchor[1]))
        query = query.where(later if forward != descending else earlier)
    ordering = (key[0].desc(), key[1].desc()) if descending else key
    rows = s.scalars(query.order_by(*ordering).limit(limit + 1)).all()
    return Page([snapshot(r) for r in rows[:limit]], len(rows) > limit)
