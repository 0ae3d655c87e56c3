"""HTTP for /v1/batches (OpenAI's Batch API): create, retrieve, list, cancel.

Thin: parse the body or query, hand it to ``jobs.batch.service.BatchService`` with the call
context. The batch itself runs later, as a job (``aimass.jobs``).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from aimass.jobs.batch.service import BatchService
from aimass.protocols.batches import MAX_LIST_LIMIT, Batch, BatchCreate, BatchList
from aimass.server import body as bodies
from aimass.server.context import call_context
from aimass.server.openapi import errors

router = APIRouter()


def _service(request: Request) -> BatchService:
    return request.app.state.batches


@router.post("/v1/batches", response_model=Batch, responses=errors("v1", 400, 404, 429),
             openapi_extra=bodies.openapi_body(BatchCreate))  # fmt: skip
async def create_batch(request: Request) -> Batch:
    body = await bodies.parse(request, BatchCreate)
    return await _service(request).create(call_context(request), body)


@router.get("/v1/batches", response_model=BatchList, responses=errors("v1", 400, 404))
async def list_batches(
    request: Request,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 20,
) -> BatchList:
    return await _service(request).list(call_context(request), after, limit)


@router.get("/v1/batches/{batch_id}", response_model=Batch, responses=errors("v1", 404))
async def retrieve_batch(request: Request, batch_id: str) -> Batch:
    return await _service(request).retrieve(call_context(request), batch_id)


@router.post("/v1/batches/{batch_id}/cancel", response_model=Batch, responses=errors("v1", 404))
async def cancel_batch(request: Request, batch_id: str) -> Batch:
    return await _service(request).cancel(call_context(request), batch_id)
