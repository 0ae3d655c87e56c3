"""What a job kind implements, and the ``JobContext`` the runner hands it.

A kind is an object with a ``name``, the ``initial_status`` of its jobs and
``async def run(job: JobContext) -> Outcome``. The runner calls ``run`` once per attempt: the
first time, after a crash of the server (from the last checkpoint), and after an error (up to
``jobs_max_attempts``). So ``run`` must pick up where ``job.checkpoint`` says, and anything it
wrote to ``job.workdir`` before is still there. A kind:

- reads ``job.params`` (validated when the job was made), and files through the Files API;
- calls ``job.status(...)`` for its own intermediate statuses (a batch: ``in_progress``,
  ``finalizing``); ``job.progress(...)``, ``job.event(...)`` and ``job.save_checkpoint(...)``
  as it goes (each is a database write: the progress is throttled here, the others are not);
- checks ``job.cancelled`` (an ``asyncio.Event``) between units of work, or raises
  ``JobCancelled`` from ``job.check_cancelled()``; a cancel must end ``run`` within seconds;
- returns an ``Outcome`` (``completed``, ``failed``, ``cancelled``, ``expired``) with the result
  the API shows; raises ``JobFailed`` for a failure a retry cannot fix;
- does heavy compute (training) in a low-priority child process, ``jobs.process.run_child``,
  never on the server's event loop or in its threads.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from aimass.errors import TooManyRequests
from aimass.registry import jobs as rows
from aimass.registry.jobs import JobRecord

PROGRESS_INTERVAL_S = 0.5
"""Least time between two progress writes of one job (the last one is always written)."""


class JobCancelled(Exception):
    """Raised inside a kind when its job was cancelled; the runner records ``cancelled``."""


class JobFailed(Exception):
    """A failure a retry cannot fix (bad input); the job ends ``failed`` with this error."""

    def __init__(
        self, message: str, code: str = "job_failed", data: Any = None, param: str | None = None
    ) -> None:
        super().__init__(message)
        self.code, self.data, self.param = code, data, param

    def as_error(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": str(self)}
        if self.data is not None:
            error["data"] = self.data
        if self.param is not None:
            error["param"] = self.param
        return error


@dataclass
class Outcome:
    """How one run of a kind ended: a terminal status and what the job shows for it."""

    status: str
    result: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None


class JobKind(Protocol):
    """One kind of job (``batch``; later ``fine_tune``...); see the module note."""

    name: str
    initial_status: str

    async def run(self, job: JobContext) -> Outcome: ...


class JobContext:
    """One attempt at one job: its record, scratch folder, checkpoint, and its reporting."""

    def __init__(self, url: str, record: JobRecord, workdir: Path, max_disk_bytes: int) -> None:
        self.url, self.record, self.workdir = url, record, workdir
        self.max_disk_bytes = max_disk_bytes
        self.checkpoint: dict[str, Any] = dict(record.checkpoint)
        self.cancelled = asyncio.Event()
        if record.cancel_requested:
            self.cancelled.set()
        self._progress_at = 0.0
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def params(self) -> dict[str, Any]:
        return self.record.params

    @property
    def attempt(self) -> int:
        return self.record.attempts

    def check_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled(self.id)

    async def status(self, status: str) -> None:
        """Enter one of the kind's own statuses (kept as ``cancelling`` once cancel is asked)."""
        await asyncio.to_thread(rows.update_job, self.url, self.id, status=status)

    async def progress(self, force: bool = False, **values: Any) -> None:
        """Record how far the job got (throttled to one write per ``PROGRESS_INTERVAL_S``)."""
        now = time.monotonic()
        if not force and now - self._progress_at < PROGRESS_INTERVAL_S:
            return
        self._progress_at = now
        await asyncio.to_thread(rows.update_job, self.url, self.id, progress=values)

    async def event(self, message: str, level: str = "info", **data: Any) -> None:
        await asyncio.to_thread(rows.add_event, self.url, self.id, level, message, data)

    async def save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Durably record where a retry should resume (JSON; large state goes in ``workdir``)."""
        self.checkpoint = dict(checkpoint)
        await asyncio.to_thread(rows.update_job, self.url, self.id, checkpoint=self.checkpoint)

    def check_disk(self) -> None:
        """Fail the job when the jobs' scratch space is over ``jobs_max_disk_bytes``."""
        used = disk_usage(self.workdir.parent)
        if used > self.max_disk_bytes:
            raise JobFailed(
                f"the jobs' scratch space holds {used} bytes, over jobs_max_disk_bytes "
                f"({self.max_disk_bytes})",
                code="jobs_max_disk_bytes",
            )

    def remove_workdir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


def disk_usage(folder: Path) -> int:
    """Bytes of every file under ``folder`` (0 when it does not exist).

    ``os.walk``, not ``Path.rglob``: jobs remove their folders while this counts, and rglob
    raises FileNotFoundError for a folder that vanishes mid-walk (a 500 on POST /v1/batches,
    found by the schemathesis test); os.walk skips it."""
    total = 0
    for root, _, names in os.walk(folder):
        for name in names:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue
    return total


def over_disk_limit(folder: Path, limit: int) -> TooManyRequests | None:
    """The error a new job gets while the scratch space is full (None if it is not): 429,
    since the space comes back as running jobs end."""
    used = disk_usage(folder)
    if used < limit:
        return None
    return TooManyRequests(
        f"the jobs' scratch space holds {used} bytes, at or over jobs_max_disk_bytes ({limit}); "
        "retry when running jobs have finished",
        param="jobs_max_disk_bytes",
        retry_after=60,
    )
