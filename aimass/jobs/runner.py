"""The durable job runner: jobs are rows, claimed under a lease, run by their kind, resumed
after a crash.

Every ``jobs_poll_interval_s`` (and at once when a job is made or cancelled) the runner renews
the leases of the jobs it runs, learns of cancels asked through another server, and claims
queued jobs, or jobs whose lease ran out because the server running them died, up to
``jobs_max_concurrent``. A claim counts an attempt; a job claimed more than
``jobs_max_attempts`` times fails, naming that setting, so a job that kills its server cannot
do so forever. A graceful stop cancels the running kinds and gives their jobs back (the attempt
not counted): the next start resumes them at once, as soon as the server is ready (its models
loaded; a batch resumed earlier would find them missing). A kind's unexpected error is retried after
``RETRY_DELAY_S``, a ``JobFailed`` is not.

Restart semantics (see docs/jobs.md): a job is never lost (its row outlives the server) and
never finishes twice (a terminal status is final; ``claim`` skips it); the work between the
last checkpoint and a crash may be done again, so a kind's output must be keyed by its input
(a batch writes each line's answer under the line's index and keeps the first).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from aimass.config import Settings
from aimass.errors import NotFound, TooManyRequests
from aimass.jobs.kind import JobCancelled, JobContext, JobFailed, JobKind, Outcome, over_disk_limit
from aimass.registry import jobs as rows
from aimass.registry.jobs import ANY_OWNER, JobRecord
from aimass.registry.tables import utcnow

RETRY_DELAY_S = 5.0
"""Wait before a job whose kind raised an unexpected error is tried again."""

log = logging.getLogger("aimass.jobs")


class JobRunner:
    """Runs the jobs of ``kinds`` stored in the registry at ``url``; one per server."""

    def __init__(
        self, settings: Settings, kinds: list[JobKind], ready: Callable[[], bool] = lambda: True
    ) -> None:
        self.settings = settings
        self.ready = ready
        self.url = settings.resolved_database_url
        self.root: Path = settings.home / "jobs"
        self.kinds = {k.name: k for k in kinds}
        self.id = f"{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(4)}"
        self._running: dict[str, tuple[asyncio.Task, JobContext]] = {}
        self._wake: asyncio.Event | None = None
        self._loop_task: asyncio.Task | None = None

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._loop_task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Stop claiming, cancel the running kinds and give their jobs back."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        tasks = [task for task, _ in self._running.values()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def wake(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # ---- what the API asks ----------------------------------------------------------------

    async def submit(
        self,
        kind: str,
        job_id: str,
        owner: tuple[int | None, str],
        params: dict[str, Any],
        expires_in_s: float | None = None,
    ) -> JobRecord:
        """Store a new job (refused, naming the setting, past the per-key or disk limit)."""
        key_id, name = owner
        limit = self.settings.jobs_max_unfinished_per_key
        if await asyncio.to_thread(rows.count_unfinished, self.url, key_id) >= limit:
            raise TooManyRequests(
                f"this key has {limit} unfinished jobs, the limit (setting "
                "jobs_max_unfinished_per_key); retry when one has finished",
                param="jobs_max_unfinished_per_key",
                retry_after=30,
            )
        full = await asyncio.to_thread(
            over_disk_limit, self.root, self.settings.jobs_max_disk_bytes
        )
        if full is not None:
            raise full
        now = utcnow()
        record = JobRecord(
            id=job_id,
            kind=kind,
            owner_key_id=key_id,
            owner=name,
            status=self.kinds[kind].initial_status,
            params=params,
            expires_at=now + timedelta(seconds=expires_in_s) if expires_in_s else None,
            created_at=now,
        )
        await asyncio.to_thread(rows.add, self.url, record)
        self.wake()
        return record

    async def get(self, job_id: str, owner: object = ANY_OWNER) -> JobRecord:
        record = await asyncio.to_thread(rows.get, self.url, job_id, owner)
        if record is None:
            raise NotFound(f"no job with id {job_id!r}", param="job_id")
        return record

    async def cancel(self, job_id: str, owner: object) -> JobRecord:
        """Ask an unfinished job to stop; its kind ends it (``cancelled``) within seconds."""
        await self.get(job_id, owner)
        record = await asyncio.to_thread(rows.request_cancel, self.url, job_id)
        running = self._running.get(job_id)
        if running is not None:
            running[1].cancelled.set()
        self.wake()
        return record or await self.get(job_id, owner)

    # ---- the loop ---------------------------------------------------------------------------

    async def _loop(self) -> None:
        assert self._wake is not None
        while True:
            try:
                await self._tick()
            except Exception:
                log.exception("jobs: the runner's tick failed; trying again")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.settings.jobs_poll_interval_s):
                    await self._wake.wait()
            self._wake.clear()

    async def _tick(self) -> None:
        lease = self.settings.jobs_lease_s
        cancelled = await asyncio.to_thread(
            rows.renew, self.url, self.id, list(self._running), lease
        )
        for job_id in cancelled:
            self._running[job_id][1].cancelled.set()
        room = self.settings.jobs_max_concurrent - len(self._running)
        if room <= 0 or not self.ready():
            return
        claimed = await asyncio.to_thread(
            rows.claim, self.url, self.id, lease, room, set(self.kinds)
        )
        for record in claimed:
            ctx = JobContext(
                self.url, record, self.root / record.id, self.settings.jobs_max_disk_bytes
            )
            task = asyncio.create_task(self._run(ctx), name=f"job {record.id}")
            self._running[record.id] = (task, ctx)

    async def _run(self, ctx: JobContext) -> None:
        record = ctx.record
        try:
            outcome = await self._attempt(ctx)
        except asyncio.CancelledError:
            await asyncio.to_thread(rows.release, self.url, self.id, record.id)
            raise
        except Exception as exc:
            log.exception("jobs: %s (%s) failed on attempt %d", record.id, record.kind, ctx.attempt)
            await self._retry_or_fail(ctx, exc)
            return
        finally:
            self._running.pop(record.id, None)
        await self._finish(ctx, outcome)

    async def _attempt(self, ctx: JobContext) -> Outcome:
        record, limit = ctx.record, self.settings.jobs_max_attempts
        if ctx.attempt > limit:
            message = (
                f"the job was started {limit} times without finishing (setting "
                "jobs_max_attempts); the last attempt ended with its server"
            )
            return Outcome(
                "failed", dict(record.result), {"code": "jobs_max_attempts", "message": message}
            )
        if ctx.attempt > 1:
            await ctx.event(f"resumed (attempt {ctx.attempt})", checkpoint=ctx.checkpoint)
        try:
            return await self.kinds[record.kind].run(ctx)
        except JobCancelled:
            return Outcome("cancelled", dict(record.result))
        except JobFailed as exc:
            return Outcome("failed", dict(record.result), exc.as_error())

    async def _retry_or_fail(self, ctx: JobContext, exc: Exception) -> None:
        message = f"{type(exc).__name__}: {exc}"
        if ctx.attempt >= self.settings.jobs_max_attempts:
            error = {"code": "job_error", "message": message}
            await self._finish(ctx, Outcome("failed", dict(ctx.record.result), error))
            return
        await ctx.event(f"attempt {ctx.attempt} failed; retrying", "warning", error=message)
        later = utcnow() + timedelta(seconds=RETRY_DELAY_S)
        await asyncio.to_thread(rows.update_job, self.url, ctx.id, lease_until=later)

    async def _finish(self, ctx: JobContext, outcome: Outcome) -> None:
        level = "error" if outcome.status == "failed" else "info"
        data = {"error": outcome.error} if outcome.error else {}
        await asyncio.to_thread(
            rows.update_job,
            self.url,
            ctx.id,
            status=outcome.status,
            event=(level, f"job {outcome.status}", data),
            result=outcome.result,
            error=outcome.error,
        )
        await asyncio.to_thread(ctx.remove_workdir)
        self.wake()
