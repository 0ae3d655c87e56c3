"""Where file bytes live: one small interface, and its local-disk implementation.

A file is written through a ``BlobWriter`` and becomes visible only when ``commit`` returns
(the local disk writes a temporary name, fsyncs, renames, fsyncs the folder), so a crash
mid-upload leaves no half file under a real key: at worst a temporary file that
``sweep_partial`` removes at the next start. An S3-compatible store fits the same shape:
``writer`` starts a multipart upload, ``commit`` completes it, ``abort`` aborts it.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK_BYTES = 1024 * 1024
"""Size of the pieces ``read`` yields."""


class BlobWriter(Protocol):
    """One file being written; nothing is visible under its key until ``commit``."""

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None:
        """Make the bytes durable and visible under the writer's key."""

    def abort(self) -> None:
        """Drop what was written (safe after ``commit`` failed, or twice)."""


class FileStorage(Protocol):
    """Bytes by key. Keys are relative, ``/``-separated names the storage chose."""

    def writer(self, key: str) -> BlobWriter: ...

    def read(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        """The stored bytes, a piece at a time; ``FileNotFoundError`` at once if there are none."""

    def local_path(self, key: str) -> Path | None:
        """A path on this machine holding the bytes, when the storage has one (else None)."""

    def delete(self, key: str) -> None:
        """Remove the bytes; a key that holds nothing is not an error."""

    def entries(self) -> Iterator[tuple[str, float]]:
        """Every committed key and when it was written (Unix time), for sweeping orphans."""

    def sweep_partial(self, older_than_s: float) -> int:
        """Remove uncommitted writes older than ``older_than_s``; how many."""


class LocalFileStorage:
    """Files under ``root`` (``AIMASS_HOME/files``) as ``root/<key>``; temporaries in ``.tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / ".tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents or key.startswith("."):
            raise ValueError(f"storage key {key!r} is outside the storage")
        return path

    def writer(self, key: str) -> _LocalWriter:
        return _LocalWriter(self.tmp / f"{uuid.uuid4().hex}.part", self._path(key))

    def read(self, key: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[bytes]:
        return _pieces(self._path(key).open("rb"), chunk_bytes)  # opened now: fails now

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def entries(self) -> Iterator[tuple[str, float]]:
        for path in self.root.rglob("*"):
            rel = path.relative_to(self.root)
            if not rel.parts[0].startswith("."):
                try:
                    if path.is_file():
                        yield rel.as_posix(), path.stat().st_mtime
                except FileNotFoundError:
                    continue

    def sweep_partial(self, older_than_s: float) -> int:
        cutoff, removed = time.time() - older_than_s, 0
        for part in self.tmp.glob("*.part"):
            try:
                if part.stat().st_mtime < cutoff:
                    part.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


class _LocalWriter:
    def __init__(self, tmp: Path, final: Path) -> None:
        self.tmp, self.final = tmp, final
        self._file = tmp.open("wb")

    def write(self, data: bytes) -> None:
        self._file.write(data)

    def commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.tmp, self.final)
        _fsync_dir(self.final.parent)

    def abort(self) -> None:
        self._file.close()
        self.tmp.unlink(missing_ok=True)


def _pieces(f: BinaryIO, chunk_bytes: int) -> Iterator[bytes]:
    with f:
        while piece := f.read(chunk_bytes):
            yield piece


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
