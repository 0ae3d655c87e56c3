"""HTTP for /v1/jobs (an AI Mass extension): the caller's durable jobs of every kind, their
events, and cancel. ``aimass jobs`` is a client of these routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from aimass.jobs.service import JobsService
from aimass.protocols.jobs import MAX_LIST_LIMIT, Job, JobEventList, JobList
from aimass.server.context import call_context
from aimass.server.openapi import errors

router = APIRouter()


def _service(request: Request) -> JobsService:
    return request.app.state.jobs


@router.get("/v1/jobs", response_model=JobList, responses=errors("v1", 400, 404))
async def list_jobs(
    request: Request,
    kind: Annotated[str | None, Query(max_length=32)] = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 20,
) -> JobList:
    return await _service(request).list(call_context(request), kind, after, limit)


@router.get("/v1/jobs/{job_id}", response_model=Job, responses=errors("v1", 404))
async def retrieve_job(request: Request, job_id: str) -> Job:
    return await _service(request).retrieve(call_context(request), job_id)


@router.get("/v1/jobs/{job_id}/events", response_model=JobEventList,
            responses=errors("v1", 400, 404))  # fmt: skip
async def job_events(
    request: Request,
    job_id: str,
    after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 100,
) -> JobEventList:
    return await _service(request).events(call_context(request), job_id, after, limit)


@router.post("/v1/jobs/{job_id}/cancel", response_model=Job, responses=errors("v1", 404))
async def cancel_job(request: Request, job_id: str) -> Job:
    return await _service(request).cancel(call_context(request), job_id)
