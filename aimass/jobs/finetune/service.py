"""The work behind /v1/fine_tuning/jobs, callable without HTTP: create, retrieve, list,
cancel, events and checkpoints, in OpenAI's shapes.

A fine-tuning job is a job of kind ``fine_tune`` (its id, ``ftjob-...``, is the job's id). What
can be checked at once is checked here, as a 400/404 naming the parameter: the base model
exists and has a method, the files are the caller's with purpose ``fine-tune``. The files'
lines are checked by the job itself (``validating_files``), as OpenAI does.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from aimass.errors import InvalidInput, NotFound
from aimass.jobs.finetune.kind import base_entry
from aimass.jobs.finetune.methods import METHODS
from aimass.jobs.runner import JobRunner
from aimass.jobs.service import page
from aimass.protocols.fine_tuning import (
    FineTuningJob,
    FineTuningJobCheckpoint,
    FineTuningJobCheckpointList,
    FineTuningJobCreate,
    FineTuningJobEvent,
    FineTuningJobEventList,
    FineTuningJobList,
)
from aimass.refs import split_model
from aimass.registry import jobs as rows
from aimass.registry.jobs import JobRecord, unix
from aimass.serving.files import FilesService
from aimass.serving.pipeline import CallContext, Pipeline

KIND = "fine_tune"
LEVELS = {"warning": "warn", "error": "error"}
"""Job event levels as OpenAI names them (every other level is ``info``)."""


def new_job_id() -> str:
    return f"ftjob-{secrets.token_hex(12)}"


def job_object(job: JobRecord) -> FineTuningJob:
    """A job row as OpenAI's ``fine_tuning.job``."""
    params, result, stamps = job.params, job.result, job.timestamps
    status = "cancelled" if job.status == rows.CANCELLING else job.status
    finished = next((stamps[s] for s in ("succeeded", "failed", "cancelled") if s in stamps), None)
    error = None
    if job.error is not None:
        error = {
            "code": job.error.get("code") or "job_failed",
            "message": job.error.get("message") or "",
            "param": job.error.get("param"),
        }
    hyper = result.get("hyperparameters") or {
        k: v for k, v in (params.get("hyperparameters") or {}).items() if v is not None
    }
    method = {"type": "supervised", "supervised": {"hyperparameters": hyper}}
    return FineTuningJob(
        id=job.id,
        created_at=unix(job.created_at),
        error=error,
        fine_tuned_model=result.get("fine_tuned_model"),
        finished_at=finished,
        hyperparameters=hyper,
        model=params["model"],
        seed=params["seed"],
        status=status,
        trained_tokens=None,
        training_file=params["training_file"],
        validation_file=params.get("validation_file"),
        metadata=params.get("metadata"),
        method=method,
        user_provided_suffix=params.get("suffix"),
        registered_model=result.get("registered_model"),
        evaluation=result.get("evaluation"),
    )


class FineTuningService:
    """Fine-tuning jobs of one server, over its job runner and Files API."""

    def __init__(self, runner: JobRunner, files: FilesService, pipeline: Pipeline) -> None:
        self.runner, self.files, self.pipeline = runner, files, pipeline

    async def create(self, ctx: CallContext, req: FineTuningJobCreate) -> FineTuningJob:
        name = split_model(req.model)[0]
        # a key scoped to other models may not train (nor learn of) this one: 403 first
        await self.pipeline.gate.authorize(ctx.caller, name, served=self.pipeline.serves(name))
        base = await asyncio.to_thread(base_entry, self.runner.url, req.model)
        if (base.spec.runtime, base.spec.task) not in METHODS:
            kinds = ", ".join(f"{r}/{t}" for r, t in METHODS)
            raise InvalidInput(
                f"model {req.model!r} (runtime {base.spec.runtime!r}, task "
                f"{base.spec.task!r}) cannot be fine-tuned here; the kinds that can: {kinds}",
                param="model",
            )
        await self._check_file(ctx, req.training_file, "training_file")
        if req.validation_file is not None:
            await self._check_file(ctx, req.validation_file, "validation_file")
        params = req.model_dump(mode="json", exclude_none=True, exclude={"hyperparameters"})
        params["hyperparameters"] = req.chosen_hyperparameters().model_dump(mode="json")
        params["seed"] = req.seed if req.seed is not None else secrets.randbelow(2**31)
        key = ctx.caller.key
        job = await self.runner.submit(
            KIND, new_job_id(), (key.id if key else None, ctx.caller.actor), params
        )
        return job_object(job)

    async def retrieve(self, ctx: CallContext, job_id: str) -> FineTuningJob:
        return job_object(await self._owned(ctx, job_id))

    async def cancel(self, ctx: CallContext, job_id: str) -> FineTuningJob:
        await self._owned(ctx, job_id)
        return job_object(await self.runner.cancel(job_id, self._filter(ctx)))

    async def list(self, ctx: CallContext, after: str | None, limit: int) -> FineTuningJobList:
        jobs, more = await page(self.runner.url, self._filter(ctx), KIND, after, limit)
        return FineTuningJobList(data=[job_object(j) for j in jobs], has_more=more)

    async def events(
        self, ctx: CallContext, job_id: str, after: str | None, limit: int
    ) -> FineTuningJobEventList:
        """Newest first, as OpenAI lists them; ``after`` is an event id (``ftevent-<seq>``)."""
        await self._owned(ctx, job_id)
        found = await asyncio.to_thread(rows.events, self.runner.url, job_id, 0, 1_000_000)
        found.reverse()
        if after is not None:
            seq = _event_seq(after)
            found = [e for e in found if e.seq < seq]
        data = [
            FineTuningJobEvent(
                id=f"ftevent-{e.seq}",
                created_at=unix(e.created_at),
                level=LEVELS.get(e.level, "info"),
                message=e.message,
                data=e.data or None,
                type="metrics" if e.message.startswith("epoch ") else "message",
            )
            for e in found[:limit]
        ]
        return FineTuningJobEventList(data=data, has_more=len(found) > limit)

    async def checkpoints(
        self, ctx: CallContext, job_id: str, after: str | None, limit: int
    ) -> FineTuningJobCheckpointList:
        """One checkpoint per finished epoch, newest first, with its metrics."""
        job = await self._owned(ctx, job_id)
        model = job.result.get("fine_tuned_model") or f"ft:{job.params['model']}:{job.id}"
        saved: list[dict[str, Any]] = job.checkpoint.get("checkpoints", [])
        items = [
            FineTuningJobCheckpoint(
                id=f"ftckpt-{job.id.removeprefix('ftjob-')}-{c['epoch']}",
                created_at=int(c.get("created_at") or unix(job.created_at)),
                fine_tuned_model_checkpoint=f"{model}:ckpt-step-{c['step']}",
                fine_tuning_job_id=job.id,
                metrics={k: float(v) for k, v in c.get("metrics", {}).items()},
                step_number=int(c["step"]),
            )
            for c in reversed(saved)
        ]
        if after is not None:
            ids = [c.id for c in items]
            if after not in ids:
                raise NotFound(f"after: no checkpoint with id {after!r}", param="after")
            items = items[ids.index(after) + 1 :]
        data = items[:limit]
        return FineTuningJobCheckpointList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=len(items) > limit,
        )

    def _filter(self, ctx: CallContext) -> object:
        return self.files.owner_filter(ctx.caller)

    async def _check_file(self, ctx: CallContext, file_id: str, param: str) -> None:
        try:
            record = await asyncio.to_thread(self.files.store.get, file_id, self._filter(ctx))
        except NotFound:
            raise NotFound(f"no file with id {file_id!r}", param=param) from None
        if record.purpose != "fine-tune":
            raise InvalidInput(
                f"file {file_id!r} has purpose {record.purpose!r}; files of a fine-tuning job "
                "must be uploaded with purpose 'fine-tune'",
                param=param,
            )

    async def _owned(self, ctx: CallContext, job_id: str) -> JobRecord:
        job = await asyncio.to_thread(rows.get, self.runner.url, job_id, self._filter(ctx))
        if job is None or job.kind != KIND:
            raise NotFound(f"no fine-tuning job with id {job_id!r}", param="fine_tuning_job_id")
        return job


def _event_seq(event_id: str) -> int:
    number = event_id.removeprefix("ftevent-")
    if not number.isascii() or not number.isdigit():
        raise InvalidInput(f"after: {event_id!r} is not an event id", param="after")
    return int(number)
