"""HTTP for /v1/fine_tuning/jobs (OpenAI's fine-tuning API): create, list, retrieve, cancel,
events and checkpoints.

Thin: parse the body or query, hand it to ``jobs.finetune.service.FineTuningService`` with the
call context. The training itself runs later, as a job (``aimass.jobs``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from aimass.jobs.finetune.service import FineTuningService
from aimass.protocols.fine_tuning import (
    MAX_LIST_LIMIT,
    FineTuningJob,
    FineTuningJobCheckpointList,
    FineTuningJobCreate,
    FineTuningJobEventList,
    FineTuningJobList,
)
from aimass.server import body as bodies
from aimass.server.context import call_context
from aimass.server.openapi import errors

router = APIRouter()
PREFIX = "/v1/fine_tuning/jobs"


def _service(request: Request) -> FineTuningService:
    return request.app.state.fine_tuning


@router.post(PREFIX, response_model=FineTuningJob, responses=errors("v1", 400, 404, 429),
             openapi_extra=bodies.openapi_body(FineTuningJobCreate))  # fmt: skip
async def create_fine_tuning_job(request: Request) -> FineTuningJob:
    body = await bodies.parse(request, FineTuningJobCreate)
    return await _service(request).create(call_context(request), body)


@router.get(PREFIX, response_model=FineTuningJobList, responses=errors("v1", 400, 404))
async def list_fine_tuning_jobs(
    request: Request,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 20,
) -> FineTuningJobList:
    return await _service(request).list(call_context(request), after, limit)


@router.get(PREFIX + "/{fine_tuning_job_id}", response_model=FineTuningJob,
            responses=errors("v1", 404))  # fmt: skip
async def retrieve_fine_tuning_job(request: Request, fine_tuning_job_id: str) -> FineTuningJob:
    return await _service(request).retrieve(call_context(request), fine_tuning_job_id)


@router.post(PREFIX + "/{fine_tuning_job_id}/cancel", response_model=FineTuningJob,
             responses=errors("v1", 404))  # fmt: skip
async def cancel_fine_tuning_job(request: Request, fine_tuning_job_id: str) -> FineTuningJob:
    return await _service(request).cancel(call_context(request), fine_tuning_job_id)


@router.get(PREFIX + "/{fine_tuning_job_id}/events", response_model=FineTuningJobEventList,
            responses=errors("v1", 400, 404))  # fmt: skip
async def list_fine_tuning_events(
    request: Request,
    fine_tuning_job_id: str,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 20,
) -> FineTuningJobEventList:
    return await _service(request).events(call_context(request), fine_tuning_job_id, after, limit)


@router.get(
    PREFIX + "/{fine_tuning_job_id}/checkpoints",
    response_model=FineTuningJobCheckpointList,
    responses=errors("v1", 400, 404),
)
async def list_fine_tuning_checkpoints(
    request: Request,
    fine_tuning_job_id: str,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 10,
) -> FineTuningJobCheckpointList:
    return await _service(request).checkpoints(
        call_context(request), fine_tuning_job_id, after, limit
    )
