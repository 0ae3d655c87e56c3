"""The work behind /v1/batches, callable without HTTP: create, retrieve, list, cancel.

A batch is a job of kind ``batch`` (its id is the job's id); this module checks what can be
checked at once (the endpoint, the input file: the caller's, purpose ``batch``), hands the job
to the runner, and shapes job rows as OpenAI's Batch objects. Another key's batch is a 404.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from aimass.config import Settings
from aimass.errors import InvalidInput, NotFound
from aimass.jobs.batch.validate import check_endpoint
from aimass.jobs.runner import JobRunner
from aimass.jobs.service import page
from aimass.protocols.batches import Batch, BatchCreate, BatchList
from aimass.registry import jobs as rows
from aimass.registry.jobs import JobRecord, unix
from aimass.serving.files import FilesService
from aimass.serving.pipeline import CallContext

KIND = "batch"


def new_batch_id() -> str:
    return f"batch_{secrets.token_hex(12)}"


def batch_object(job: JobRecord) -> Batch:
    """A job row as OpenAI's Batch (progress while running, the result once finished)."""
    params, result, stamps = job.params, job.result, job.timestamps
    counts = result.get("request_counts") or {
        k: job.progress.get(k, 0) for k in ("total", "completed", "failed")
    }
    usage = result.get("usage") or job.progress.get("usage")
    errors = None
    if job.error is not None:
        data = job.error.get("data") or [
            {"code": job.error.get("code"), "message": job.error.get("message")}
        ]
        errors = {"object": "list", "data": data}
    fields: dict[str, Any] = {f"{s}_at": stamps.get(s) for s in _STAMPED}
    return Batch(
        id=job.id,
        endpoint=params["endpoint"],
        errors=errors,
        input_file_id=params["input_file_id"],
        completion_window=params["completion_window"],
        status=job.status,
        output_file_id=result.get("output_file_id"),
        error_file_id=result.get("error_file_id"),
        created_at=unix(job.created_at),
        expires_at=unix(job.expires_at) if job.expires_at else None,
        request_counts=counts,
        usage=usage or {},
        model=result.get("model"),
        metadata=params.get("metadata"),
        **fields,
    )


_STAMPED = ("in_progress", "finalizing", "completed", "failed", "expired", "cancelling",
            "cancelled")  # fmt: skip


class BatchService:
    """Batches of one server, over its job runner and Files API."""

    def __init__(self, runner: JobRunner, files: FilesService, settings: Settings) -> None:
        self.runner, self.files, self.settings = runner, files, settings

    async def create(self, ctx: CallContext, req: BatchCreate) -> Batch:
        check_endpoint(req.endpoint)
        owner = self.files.owner_filter(ctx.caller)
        try:
            record = await asyncio.to_thread(self.files.store.get, req.input_file_id, owner)
        except NotFound:
            raise NotFound(
                f"no file with id {req.input_file_id!r}", param="input_file_id"
            ) from None
        if record.purpose != "batch":
            raise InvalidInput(
                f"file {req.input_file_id!r} has purpose {record.purpose!r}; a batch's input "
                "file must be uploaded with purpose 'batch'",
                param="input_file_id",
            )
        key = ctx.caller.key
        job = await self.runner.submit(
            KIND,
            new_batch_id(),
            (key.id if key else None, ctx.caller.actor),
            req.model_dump(mode="json", exclude_none=True),
            expires_in_s=self.settings.batch_completion_window_s,
        )
        return batch_object(job)

    async def retrieve(self, ctx: CallContext, batch_id: str) -> Batch:
        return batch_object(await self._owned(ctx, batch_id))

    async def cancel(self, ctx: CallContext, batch_id: str) -> Batch:
        await self._owned(ctx, batch_id)
        return batch_object(await self.runner.cancel(batch_id, self._filter(ctx)))

    async def list(self, ctx: CallContext, after: str | None, limit: int) -> BatchList:
        jobs, more = await page(self.runner.url, self._filter(ctx), KIND, after, limit)
        data = [batch_object(j) for j in jobs]
        return BatchList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=more,
        )

    def _filter(self, ctx: CallContext) -> object:
        return self.files.owner_filter(ctx.caller)

    async def _owned(self, ctx: CallContext, batch_id: str) -> JobRecord:
        job = await asyncio.to_thread(rows.get, self.runner.url, batch_id, self._filter(ctx))
        if job is None or job.kind != KIND:
            raise NotFound(f"no batch with id {batch_id!r}", param="batch_id")
        return job
