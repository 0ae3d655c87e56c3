"""File metadata rows (the ``files`` table): written, read, listed a page at a time, deleted.

The bytes are not here: ``aimass.files`` keeps them in a ``FileStorage`` and writes a row
only once they are durable. Ownership is a filter: ``owner`` is the uploading key's id, and
``ANY_OWNER`` (admins, auth off) lifts the filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, delete, or_, select

from aimass.registry.db import session_scope
from aimass.registry.tables import FileRow, utcnow

ANY_OWNER = object()
"""``owner`` value that matches every file (an admin key, or auth off)."""


@dataclass(frozen=True)
class FileRecord:
    """One file's metadata, detached from the database session."""

    id: str
    owner_key_id: int | None
    owner: str
    purpose: str
    filename: str
    content_type: str | None
    bytes: int
    sha256: str
    storage_key: str
    created_at: datetime
    expires_at: datetime | None

    @classmethod
    def of(cls, row: FileRow) -> FileRecord:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})


def add(url: str, record: FileRecord) -> None:
    with session_scope(url) as s:
        s.add(FileRow(**record.__dict__))


def _visible(owner: object, now: datetime):
    live = or_(FileRow.expires_at.is_(None), FileRow.expires_at > now)
    if owner is ANY_OWNER:
        return live
    mine = FileRow.owner_key_id.is_(None) if owner is None else FileRow.owner_key_id == owner
    return and_(live, mine)


def get(url: str, file_id: str, owner: object) -> FileRecord | None:
    """The file, if it exists, has not expired, and ``owner`` may see it."""
    q = select(FileRow).where(FileRow.id == file_id, _visible(owner, utcnow()))
    with session_scope(url) as s:
        row = s.scalars(q).first()
        return FileRecord.of(row) if row else None


def page(
    url: str,
    owner: object,
    *,
    purpose: str | None,
    after: FileRecord | None,
    limit: int,
    newest_first: bool,
) -> list[FileRecord]:
    """Up to ``limit`` files in (created_at, id) order, those past ``after`` only."""
    q = select(FileRow).where(_visible(owner, utcnow()))
    if purpose is not None:
        q = q.where(FileRow.purpose == purpose)
    if after is not None:
        at, fid = after.created_at, after.id
        if newest_first:
            q = q.where(
                or_(FileRow.created_at < at, and_(FileRow.created_at == at, FileRow.id < fid))
            )
        else:
            q = q.where(
                or_(FileRow.created_at > at, and_(FileRow.created_at == at, FileRow.id > fid))
            )
    order = (
        (FileRow.created_at.desc(), FileRow.id.desc())
        if newest_first
        else (FileRow.created_at, FileRow.id)
    )
    with session_scope(url) as s:
        return [FileRecord.of(r) for r in s.scalars(q.order_by(*order).limit(limit))]


def remove(url: str, file_id: str) -> bool:
    """Delete the row; whether there was one."""
    with session_scope(url) as s:
        return s.execute(delete(FileRow).where(FileRow.id == file_id)).rowcount > 0


def expired(url: str, limit: int = 1000) -> list[FileRecord]:
    """Files whose ``expires_at`` has passed, oldest first (for the sweep that deletes them)."""
    q = (
        select(FileRow)
        .where(FileRow.expires_at.is_not(None), FileRow.expires_at <= utcnow())
        .order_by(FileRow.expires_at)
        .limit(limit)
    )
    with session_scope(url) as s:
        return [FileRecord.of(r) for r in s.scalars(q)]


def storage_keys(url: str) -> set[str]:
    """Every storage key a row names (what an orphan sweep must keep)."""
    with session_scope(url) as s:
        return set(s.scalars(select(FileRow.storage_key)))
