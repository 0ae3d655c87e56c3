"""The work behind /v1/files, callable without HTTP: uploads, listings, reads and deletes with
the caller's ownership applied.

A file belongs to the API key that uploaded it: another key gets 404 for it (its existence is
not disclosed), an admin key sees every file, and with auth off every call is the anonymous
caller, who owns everything. Database and disk work runs in worker threads, so a slow disk
never stalls the event loop. Deletes go to the audit log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta

from aimass.access.gate import Caller, Gate
from aimass.errors import InvalidInput, NotFound
from aimass.files.store import ANY_OWNER, FileRecord, FileStore, Owner, Upload
from aimass.protocols.files import (
    MAX_EXPIRES_S,
    MIN_EXPIRES_S,
    UPLOAD_PURPOSES,
    FileDeleted,
    FileList,
    FileListQuery,
    FileObject,
)
from aimass.serving.pipeline import CallContext

PURPOSES = ", ".join(UPLOAD_PURPOSES)
SWEEP_INTERVAL_S = 3600.0
"""How often expired files and crash leftovers are removed (and once at start)."""

log = logging.getLogger("aimass.files")


def file_object(record: FileRecord) -> FileObject:
    return FileObject(
        id=record.id,
        bytes=record.bytes,
        created_at=_unix(record.created_at),
        expires_at=_unix(record.expires_at) if record.expires_at else None,
        filename=record.filename,
        purpose=record.purpose,
    )


def _unix(at: datetime) -> int:
    return int((at - datetime(1970, 1, 1)).total_seconds())


def check_purpose(purpose: str | None) -> str:
    if not purpose:
        raise InvalidInput(f"purpose is required: one of {PURPOSES}", param="purpose")
    if purpose not in UPLOAD_PURPOSES:
        raise InvalidInput(f"purpose {purpose!r} is not one of {PURPOSES}", param="purpose")
    return purpose


def expiry(anchor: str | None, seconds: str | None, now: datetime) -> datetime | None:
    """``expires_after`` (anchor ``created_at``, 3600..2592000 seconds) as an expiry time."""
    if anchor is None and seconds is None:
        return None
    if anchor != "created_at":
        raise InvalidInput(
            "expires_after[anchor] must be 'created_at'", param="expires_after.anchor"
        )
    try:
        value = int(seconds or "")
    except ValueError:
        value = -1
    if not MIN_EXPIRES_S <= value <= MAX_EXPIRES_S:
        raise InvalidInput(
            f"expires_after[seconds] must be an integer from {MIN_EXPIRES_S} to {MAX_EXPIRES_S}",
            param="expires_after.seconds",
        )
    return now + timedelta(seconds=value)


class FilesService:
    """Files of one server; ``store`` keeps the bytes and rows, ``gate`` knows admins."""

    def __init__(self, store: FileStore, gate: Gate) -> None:
        self.store, self.gate = store, gate
        self._sweeper: asyncio.Task | None = None

    async def start(self) -> None:
        """Sweep now and every ``SWEEP_INTERVAL_S`` in the background."""
        self._sweeper = asyncio.create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.store.sweep)
            except Exception:
                log.exception("files: the sweep of expired and orphaned files failed")
            await asyncio.sleep(SWEEP_INTERVAL_S)

    def owner_filter(self, caller: Caller) -> object:
        """What ``caller`` may see: every file (admin, auth off) or its key's own."""
        if self.gate.is_admin(caller):
            return ANY_OWNER
        return caller.key.id if caller.key else None

    @staticmethod
    def owner(caller: Caller) -> Owner:
        return Owner(caller.key.id, caller.key.name) if caller.key else Owner(None)

    async def begin_upload(
        self, ctx: CallContext, filename: str, content_type: str | None
    ) -> Upload:
        """Start receiving a file; ``finish_upload`` or ``Upload.abort`` ends it."""
        owner = self.owner(ctx.caller)
        return await asyncio.to_thread(
            self.store.upload, owner, filename, "user_data", content_type
        )

    async def finish_upload(
        self,
        upload: Upload,
        purpose: str | None,
        anchor: str | None = None,
        seconds: str | None = None,
    ) -> FileObject:
        """Check the form's fields, then make the file durable and visible."""
        try:
            fields = {"purpose": check_purpose(purpose)}
            fields["expires_at"] = expiry(anchor, seconds, upload.created_at)
        except BaseException:
            await asyncio.to_thread(upload.abort)
            raise
        return file_object(await asyncio.to_thread(upload.finish, **fields))

    async def list(self, ctx: CallContext, query: FileListQuery) -> FileList:
        owner = self.owner_filter(ctx.caller)

        def work() -> list[FileRecord]:
            after = None
            if query.after is not None:
                try:
                    after = self.store.get(query.after, owner)
                except NotFound:
                    raise NotFound(
                        f"after: no file with id {query.after!r}", param="after"
                    ) from None
            return self.store.page(
                owner,
                purpose=query.purpose,
                after=after,
                limit=query.limit + 1,
                newest_first=query.order == "desc",
            )

        records = await asyncio.to_thread(work)
        data = [file_object(r) for r in records[: query.limit]]
        return FileList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=len(records) > query.limit,
        )

    async def retrieve(self, ctx: CallContext, file_id: str) -> FileObject:
        owner = self.owner_filter(ctx.caller)
        return file_object(await asyncio.to_thread(self.store.get, file_id, owner))

    async def content(self, ctx: CallContext, file_id: str) -> tuple[FileRecord, Iterator[bytes]]:
        """The file's record and its bytes, a piece at a time (read them in a thread)."""
        owner = self.owner_filter(ctx.caller)
        record = await asyncio.to_thread(self.store.get, file_id, owner)
        try:
            return record, await asyncio.to_thread(self.store.read, record)
        except FileNotFoundError:
            log.error("files: %s has a row but no bytes in storage", file_id)
            raise NotFound(f"the bytes of file {file_id!r} are missing", param="file_id") from None

    async def delete(self, ctx: CallContext, file_id: str) -> FileDeleted:
        owner = self.owner_filter(ctx.caller)
        async with self.gate.audited(ctx.caller, "files.delete", file_id):
            record = await asyncio.to_thread(self.store.delete, file_id, owner)
        return FileDeleted(id=record.id)
