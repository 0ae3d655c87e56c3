"""Files as the API sees them: bytes in a ``FileStorage`` and a metadata row, kept in step.

Order of writes, so that a crash at any point leaves nothing half visible:

- upload: bytes to a temporary name, fsync, rename (``BlobWriter.commit``), then the row;
  a crash before the row leaves a blob no row names, which ``sweep`` removes;
- delete: the row first (the file is gone for every reader at once), then the blob.

``FileStore`` knows owners, not callers: ``Owner`` is who a new file belongs to, and reads take
the owner filter of ``registry.files`` (a key id, ``None`` for anonymous, or ``ANY_OWNER``).
The jobs runner uses ``create``/``read``/``local_path`` directly for batch and training files.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath, PureWindowsPath

from aimass.errors import NotFound, PayloadTooLarge
from aimass.files.storage import FileStorage
from aimass.registry import files as rows
from aimass.registry.files import ANY_OWNER, FileRecord
from aimass.registry.tables import utcnow

log = logging.getLogger("aimass.files")

ORPHAN_AGE_S = 3600.0
"""A blob without a row, or a temporary write, older than this is a crash's leftover."""
MAX_FILENAME = 255

__all__ = ["ANY_OWNER", "FileRecord", "FileStore", "Owner", "Upload", "new_file_id"]


@dataclass(frozen=True)
class Owner:
    """Who a new file belongs to: an API key (id and name), or ``None``/``anonymous``."""

    key_id: int | None
    name: str = "anonymous"


def new_file_id() -> str:
    """``file-`` and 24 random hex characters (96 bits)."""
    return f"file-{secrets.token_hex(12)}"


def clean_filename(name: str) -> str:
    """The last path component of a client's file name, at most 255 characters."""
    base = PureWindowsPath(PurePosixPath(name).name).name.strip()
    return (base or "file")[:MAX_FILENAME]


class Upload:
    """One file being received: counted against ``max_file_bytes`` and hashed as it arrives."""

    def __init__(self, store: FileStore, record: FileRecord) -> None:
        self._store, self._record = store, record
        self._writer = store.storage.writer(record.storage_key)
        self._sha = hashlib.sha256()
        self.size = 0

    @property
    def created_at(self) -> datetime:
        return self._record.created_at

    def write(self, data: bytes) -> None:
        """Append ``data``; ``PayloadTooLarge`` (and the upload aborted) past the limit."""
        self.size += len(data)
        if self.size > self._store.max_file_bytes:
            self.abort()
            raise PayloadTooLarge(
                f"file is larger than max_file_bytes ({self._store.max_file_bytes} bytes)",
                param="max_file_bytes",
            )
        self._sha.update(data)
        self._writer.write(data)

    def finish(self, **fields) -> FileRecord:
        """Commit the bytes, then the row (``fields`` may still set purpose, expiry, ...)."""
        record = FileRecord(
            **{
                **self._record.__dict__,
                **fields,
                "bytes": self.size,
                "sha256": self._sha.hexdigest(),
            }
        )
        self._writer.commit()
        try:
            rows.add(self._store.url, record)
        except BaseException:
            self._store.storage.delete(record.storage_key)
            raise
        return record

    def abort(self) -> None:
        self._writer.abort()


class FileStore:
    """Files of one registry database and one storage."""

    def __init__(self, url: str, storage: FileStorage, max_file_bytes: int) -> None:
        self.url, self.storage, self.max_file_bytes = url, storage, max_file_bytes

    def upload(
        self,
        owner: Owner,
        filename: str,
        purpose: str,
        content_type: str | None = None,
        expires_at: datetime | None = None,
    ) -> Upload:
        """Start receiving a file; ``Upload.finish`` makes it visible, ``abort`` drops it."""
        file_id = new_file_id()
        record = FileRecord(
            id=file_id,
            owner_key_id=owner.key_id,
            owner=owner.name[:160],
            purpose=purpose,
            filename=clean_filename(filename),
            content_type=(content_type or None) and content_type[:255],
            bytes=0,
            sha256="",
            storage_key=f"{file_id[5:7]}/{file_id}",
            created_at=utcnow(),
            expires_at=expires_at,
        )
        return Upload(self, record)

    def create(
        self,
        owner: Owner,
        filename: str,
        purpose: str,
        chunks: Iterable[bytes],
        content_type: str | None = None,
        expires_at: datetime | None = None,
    ) -> FileRecord:
        """A whole file from ``chunks`` (jobs write their output files this way)."""
        upload = self.upload(owner, filename, purpose, content_type, expires_at)
        try:
            for chunk in chunks:
                upload.write(chunk)
        except BaseException:
            upload.abort()
            raise
        return upload.finish()

    def get(self, file_id: str, owner: object = ANY_OWNER) -> FileRecord:
        """The file, or ``NotFound`` (also for another owner's file: its existence is private)."""
        record = rows.get(self.url, file_id, owner)
        if record is None:
            raise NotFound(f"no file with id {file_id!r}", param="file_id")
        return record

    def read(self, record: FileRecord) -> Iterator[bytes]:
        return self.storage.read(record.storage_key)

    def local_path(self, record: FileRecord) -> Path | None:
        return self.storage.local_path(record.storage_key)

    def page(self, owner: object, **query) -> list[FileRecord]:
        """``registry.files.page`` (purpose, after, limit, newest_first) for ``owner``."""
        return rows.page(self.url, owner, **query)

    def delete(self, file_id: str, owner: object = ANY_OWNER) -> FileRecord:
        """Remove the row (the file is gone at once), then its bytes."""
        record = self.get(file_id, owner)
        if not rows.remove(self.url, file_id):
            raise NotFound(f"no file with id {file_id!r}", param="file_id")
        self.storage.delete(record.storage_key)
        return record

    def sweep(self, orphan_age_s: float = ORPHAN_AGE_S) -> int:
        """Delete expired files, crash leftovers (temporaries) and blobs no row names that are
        older than ``orphan_age_s``; how many things were removed."""
        removed = self.storage.sweep_partial(orphan_age_s)
        for record in rows.expired(self.url):
            if rows.remove(self.url, record.id):
                self.storage.delete(record.storage_key)
                removed += 1
        named = rows.storage_keys(self.url)
        cutoff = time.time() - orphan_age_s
        for key, written in list(self.storage.entries()):
            if key not in named and written < cutoff:
                self.storage.delete(key)
                removed += 1
        if removed:
            log.info("files: swept %d expired or orphaned item(s)", removed)
        return removed
