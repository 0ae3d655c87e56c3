"""The work behind /v1/jobs (an AI Mass extension), callable without HTTP: the caller's jobs of
every kind, one job, its events, and cancel. An admin key sees every job; another key's job is
a 404, as for files."""

from __future__ import annotations

import asyncio

from aimass.errors import NotFound
from aimass.jobs.runner import JobRunner
from aimass.protocols.jobs import Job, JobEvent, JobEventList, JobList
from aimass.registry import jobs as rows
from aimass.registry.jobs import JobRecord, unix
from aimass.serving.files import FilesService
from aimass.serving.pipeline import CallContext


def job_object(job: JobRecord) -> Job:
    return Job(
        id=job.id,
        kind=job.kind,
        status=job.status,
        owner=job.owner,
        created_at=unix(job.created_at),
        timestamps=job.timestamps,
        progress=job.progress,
        result=job.result,
        error=job.error,
        attempts=job.attempts,
    )


async def page(
    url: str, owner: object, kind: str | None, after: str | None, limit: int
) -> tuple[list[JobRecord], bool]:
    """Up to ``limit`` of ``owner``'s jobs (of ``kind``) older than job ``after``, newest
    first, and whether there are more; 404 naming ``after`` if it is not one of them."""
    last = None
    if after is not None:
        last = await asyncio.to_thread(rows.get, url, after, owner)
        if last is None or (kind is not None and last.kind != kind):
            raise NotFound(f"after: no {kind or 'job'} with id {after!r}", param="after")
    jobs = await asyncio.to_thread(rows.page, url, owner, kind=kind, after=last, limit=limit + 1)
    return jobs[:limit], len(jobs) > limit


class JobsService:
    """Jobs of one server, read through its runner; ``files`` knows who may see what."""

    def __init__(self, runner: JobRunner, files: FilesService) -> None:
        self.runner, self.files = runner, files

    def _filter(self, ctx: CallContext) -> object:
        return self.files.owner_filter(ctx.caller)

    async def list(
        self, ctx: CallContext, kind: str | None, after: str | None, limit: int
    ) -> JobList:
        jobs, more = await page(self.runner.url, self._filter(ctx), kind, after, limit)
        data = [job_object(j) for j in jobs]
        return JobList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=more,
        )

    async def retrieve(self, ctx: CallContext, job_id: str) -> Job:
        return job_object(await self.runner.get(job_id, self._filter(ctx)))

    async def cancel(self, ctx: CallContext, job_id: str) -> Job:
        return job_object(await self.runner.cancel(job_id, self._filter(ctx)))

    async def events(self, ctx: CallContext, job_id: str, after: int, limit: int) -> JobEventList:
        await self.runner.get(job_id, self._filter(ctx))
        found = await asyncio.to_thread(rows.events, self.runner.url, job_id, after, limit + 1)
        data = [
            JobEvent(seq=e.seq, level=e.level, message=e.message, data=e.data,
                     created_at=unix(e.created_at))
            for e in found[:limit]
        ]  # fmt: skip
        return JobEventList(data=data, has_more=len(found) > limit)
