"""The ``batch`` job kind: validate the input file, send its lines through the serving path at a
lower priority than online calls, then write the output and error files.

Phases, each resumable (the checkpoint says which one a crash interrupted):

- ``validating``: the whole file is checked (``validate.py``); any invalid line fails the
  batch with every error and its line number, before anything runs.
- ``in_progress``: lines go to the model as the batch's owner, at most ``batch_max_in_flight``
  at a time, and one at a time while online calls of the model are open or were within
  ``batch_yield_s`` (``Pipeline.online``), so online traffic waits behind little batch work.
  A line refused for load (429: queue full, rate limit) waits and is sent again, as is one
  whose model is unavailable (503) for up to ``UNAVAILABLE_RETRY_S``; any other error is its
  answer. Each answer is appended to the job's result log at once (``results.py``), so after
  a crash only unanswered lines are sent again.
- ``finalizing``: output (2xx answers) and error files are written in input order; lines never
  answered (cancelled, expired) are listed in the error file. The file ids are checkpointed
  as they are made, so a crash here does not write them twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from aimass.access.gate import Caller
from aimass.config import Settings
from aimass.errors import AimassError, ModelFailed, TooManyRequests, Unavailable
from aimass.files.store import FileStore, Owner
from aimass.jobs.batch.lines import LineSender, error_body
from aimass.jobs.batch.results import ResultLog
from aimass.jobs.batch.validate import Line, validate
from aimass.jobs.kind import JobContext, JobFailed, Outcome
from aimass.refs import split_model
from aimass.registry.keys import list_keys
from aimass.registry.tables import utcnow
from aimass.serving.pipeline import CallContext, Pipeline

RETRY_CAP_S = 5.0
"""Longest wait before a line refused for load (429) is sent again."""
UNAVAILABLE_RETRY_S = 60.0
"""How long a line keeps being sent again while its model is unavailable (503: a replica
restarting); after that the 503 is its answer."""
YIELD_POLL_S = 0.02
"""How often a batch that gave way to online calls looks again."""
ENDED = {
    "cancelled": ("batch_cancelled", "the batch was cancelled before this request ran"),
    "expired": ("batch_expired", "the batch's completion window ended before this request ran"),
}


class BatchKind:
    """Runs batches over one server's services; see the module note."""

    name = "batch"
    initial_status = "validating"

    def __init__(
        self, pipeline: Pipeline, sender: LineSender, files: FileStore, settings: Settings
    ) -> None:
        self.pipeline, self.sender, self.files, self.settings = pipeline, sender, files, settings

    async def run(self, job: JobContext) -> Outcome:
        lines, model = await self._validated(job)
        log = await asyncio.to_thread(ResultLog.open, job.workdir / "results.jsonl")
        ended = job.checkpoint.get("ended")
        if ended is None:
            await job.status("in_progress")
            ended = await self._work(job, lines, model, log)
            await asyncio.to_thread(log.sync)
            await job.save_checkpoint({**job.checkpoint, "ended": ended})
        await job.status("finalizing")
        result = await self._finalize(job, lines, log, ended)
        result["model"] = model
        await job.event(f"batch {ended}", **result["request_counts"])
        return Outcome("completed" if ended == "done" else ended, result)

    # ---- validating ------------------------------------------------------------------------

    async def _validated(self, job: JobContext) -> tuple[list[Line], str]:
        params = job.params
        try:
            record = await asyncio.to_thread(self.files.get, params["input_file_id"])
            data = b"".join(await asyncio.to_thread(lambda: list(self.files.read(record))))
        except (AimassError, FileNotFoundError):
            raise JobFailed(
                f"the input file {params['input_file_id']!r} is gone",
                "file_not_found",
                [
                    {
                        "code": "file_not_found",
                        "message": "the input file is gone",
                        "param": "input_file_id",
                    }
                ],
            ) from None
        lines, errors = await asyncio.to_thread(
            validate, data, params["endpoint"], self.settings.batch_max_lines, self.pipeline.serves
        )
        if errors:
            if job.attempt == 1:
                await job.event(f"the input file has {len(errors)} invalid line(s)", "error")
            raise JobFailed(
                f"{len(errors)} line(s) of the input file are invalid", "invalid_input_file", errors
            )
        if job.checkpoint.get("total") is None:
            await job.save_checkpoint({"total": len(lines)})
            await job.event(f"validated {len(lines)} request(s)", total=len(lines))
        return lines, lines[0].model

    # ---- in progress -------------------------------------------------------------------------

    async def _work(self, job: JobContext, lines: list[Line], model: str, log: ResultLog) -> str:
        """Send every unanswered line; how the work ended: done, cancelled or expired."""
        caller = await self._owner(job)
        todo = iter([line for line in lines if line.index not in log.spans])
        name = split_model(model)[0]
        in_flight: set[asyncio.Task] = set()
        stop = asyncio.create_task(job.cancelled.wait())
        ended, left = "done", self._time_left(job)
        try:
            async with asyncio.timeout(left):
                for line in todo:
                    while len(in_flight) >= self._window(name) and not stop.done():
                        await asyncio.wait(
                            {*in_flight, stop},
                            timeout=YIELD_POLL_S,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                        in_flight = {t for t in in_flight if not t.done()}
                        await self._report(job, len(lines), log)
                    if stop.done():
                        break
                    in_flight.add(asyncio.create_task(self._answer(job, caller, line, log)))
                while in_flight and not stop.done():
                    await asyncio.wait({*in_flight, stop}, return_when=asyncio.FIRST_COMPLETED)
                    in_flight = {t for t in in_flight if not t.done()}
                    await self._report(job, len(lines), log)
        except TimeoutError:
            ended = "expired"
        finally:
            stop.cancel()
            for task in in_flight:
                task.cancel()
            await asyncio.gather(*in_flight, stop, return_exceptions=True)
        if ended == "done" and job.cancelled.is_set():
            ended = "cancelled"
        await self._report(job, len(lines), log, force=True)
        return ended

    def _window(self, name: str) -> int:
        """Lines in flight now: one while online calls of the model are open or were, within
        ``batch_yield_s``."""
        if self.pipeline.online(name, self.settings.batch_yield_s):
            return 1
        return self.settings.batch_max_in_flight

    @staticmethod
    def _time_left(job: JobContext) -> float | None:
        if job.record.expires_at is None:
            return None
        return max(0.0, (job.record.expires_at - utcnow()) / timedelta(seconds=1))

    async def _answer(self, job: JobContext, caller: Caller, line: Line, log: ResultLog) -> None:
        endpoint = job.params["endpoint"]
        ctx = CallContext(caller, background=True)
        request_id = f"req_{uuid.uuid4().hex}"
        patience = time.monotonic() + UNAVAILABLE_RETRY_S
        while True:
            try:
                body, status = await self.sender.send(ctx, endpoint, line.body), 200
            except TooManyRequests as exc:
                await asyncio.sleep(min(exc.retry_after, RETRY_CAP_S))
                continue
            except Unavailable as exc:
                if time.monotonic() < patience:
                    await asyncio.sleep(1.0)
                    continue
                body, status = error_body(endpoint, exc), exc.status
            except AimassError as exc:
                body, status = error_body(endpoint, exc), exc.status
            except Exception as exc:
                failed = ModelFailed(f"the request failed: {type(exc).__name__}: {exc}")
                body, status = error_body(endpoint, failed), failed.status
            break
        output = {
            "id": f"batch_req_{uuid.uuid4().hex[:24]}",
            "custom_id": line.custom_id,
            "response": {"status_code": status, "request_id": request_id, "body": body},
            "error": None,
        }
        log.append(line.index, status < 300, output)

    async def _report(self, job: JobContext, total: int, log: ResultLog, force=False) -> None:
        tally = log.tally
        await job.progress(
            force,
            total=total,
            completed=tally.completed,
            failed=tally.failed,
            usage=tally.usage(),
        )

    async def _owner(self, job: JobContext) -> Caller:
        """The batch's owner as a caller (found again by its key id after a restart)."""
        key_id = job.record.owner_key_id
        if key_id is None:
            return Caller(None, "batch")
        keys = await asyncio.to_thread(list_keys, self.files.url)
        key = next((k for k in keys if k.id == key_id), None)
        if key is None:
            raise JobFailed("the API key that made the batch is gone", "owner_gone")
        return Caller(key, "batch")

    # ---- finalizing --------------------------------------------------------------------------

    async def _finalize(
        self, job: JobContext, lines: list[Line], log: ResultLog, ended: str
    ) -> dict[str, Any]:
        unanswered = None
        if ended in ENDED:
            code, message = ENDED[ended]
            unanswered = {"code": code, "message": message}
        expires = job.params.get("output_expires_after")
        unsent = len(lines) - len(log.spans) if unanswered else 0
        counts = {True: log.tally.completed, False: log.tally.failed + unsent}
        for ok, purpose in ((True, "output"), (False, "error")):
            key = f"{purpose}_file_id"
            if key in job.checkpoint:
                continue
            file_id = None
            if counts[ok]:
                pieces = (raw for good, raw in log.outputs(lines, unanswered) if good == ok)
                file_id = await self._write(job, f"batch_{purpose}.jsonl", pieces, expires)
            await job.save_checkpoint({**job.checkpoint, key: file_id})
        tally = log.tally
        return {
            "output_file_id": job.checkpoint["output_file_id"],
            "error_file_id": job.checkpoint["error_file_id"],
            "request_counts": {
                "total": len(lines),
                "completed": tally.completed,
                "failed": tally.failed,
            },
            "usage": tally.usage(),
        }

    async def _write(
        self, job: JobContext, filename: str, pieces: Iterator[bytes], expires: dict | None
    ) -> str:
        """A file of ``pieces``, read and written in a thread (a large batch's answers would
        hold the event loop for seconds)."""
        owner = Owner(job.record.owner_key_id, job.record.owner)
        expires_at = None
        if expires:
            expires_at = utcnow() + timedelta(seconds=int(expires["seconds"]))
        record = await asyncio.to_thread(
            self.files.create,
            owner,
            filename,
            "batch_output",
            pieces,
            "application/jsonl",
            expires_at,
        )
        return record.id
