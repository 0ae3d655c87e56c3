"""HTTP for /v1/vector_stores (OpenAI's Vector Stores API, with AI Mass's extensions).

Thin: parse the body or query, hand it to ``serving.vector_stores.VectorStoreService`` with the
call context, write the answer. The search route is on the fast path.
"""

from __future__ import annotations

from typing import Literal

import orjson
from fastapi import APIRouter, Query, Request, Response

from aimass.protocols.vector_stores import (
    FileBatch,
    FileBatchCreate,
    FileContentPage,
    SearchRequest,
    SearchResultsPage,
    VectorStore,
    VectorStoreCreate,
    VectorStoreDeleted,
    VectorStoreFile,
    VectorStoreFileCreate,
    VectorStoreFileDeleted,
    VectorStoreFileList,
    VectorStoreFileUpdate,
    VectorStoreList,
    VectorStoreUpdate,
)
from aimass.server import body as bodies
from aimass.server.context import call_context, watched
from aimass.server.fastpath import fast
from aimass.server.openapi import errors
from aimass.serving.vector_stores import VectorStoreService

router = APIRouter()

STORE = "/v1/vector_stores/{vector_store_id}"
_READ = errors("v1", 400, 404)
_MODEL = errors("v1", 400, 403, 404, 429, 503, 504)

Limit = Query(default=20, ge=1, le=100)
Order = Literal["asc", "desc"]
Status = Literal["in_progress", "completed", "failed", "cancelled"]


def _service(request: Request) -> VectorStoreService:
    return request.app.state.vector_stores


def _page(limit: int, order: str, after: str | None, before: str | None) -> dict:
    return {"limit": limit, "order": order, "after": after, "before": before}


@router.post("/v1/vector_stores", response_model=VectorStore, responses=_MODEL,
             openapi_extra=bodies.openapi_body(VectorStoreCreate))  # fmt: skip
async def create_store(request: Request) -> dict:
    body = await bodies.parse(request, VectorStoreCreate)
    return await _service(request).create(call_context(request), body)


@router.get("/v1/vector_stores", response_model=VectorStoreList, responses=_READ)
async def list_stores(
    request: Request,
    limit: int = Limit,
    order: Order = "desc",
    after: str | None = None,
    before: str | None = None,
) -> dict:
    page = _page(limit, order, after, before)
    return await _service(request).list(call_context(request), **page)


@router.get(STORE, response_model=VectorStore, responses=_READ)
async def get_store(request: Request, vector_store_id: str) -> dict:
    return await _service(request).retrieve(call_context(request), vector_store_id)


@router.post(STORE, response_model=VectorStore, responses=_READ,
             openapi_extra=bodies.openapi_body(VectorStoreUpdate))  # fmt: skip
async def modify_store(request: Request, vector_store_id: str) -> dict:
    body = await bodies.parse(request, VectorStoreUpdate)
    return await _service(request).modify(call_context(request), vector_store_id, body)


@router.delete(STORE, response_model=VectorStoreDeleted, responses=_READ)
async def delete_store(request: Request, vector_store_id: str) -> dict:
    return await _service(request).delete(call_context(request), vector_store_id)


@fast
@router.post(STORE + "/search", response_model=SearchResultsPage, responses=_MODEL,
             openapi_extra=bodies.openapi_body(SearchRequest))  # fmt: skip
async def search(request: Request, vector_store_id: str) -> Response:
    body = await bodies.parse(request, SearchRequest)
    ctx = call_context(request)

    async def work() -> Response:
        answer = await _service(request).search(ctx, vector_store_id, body)
        return Response(orjson.dumps(answer), media_type="application/json")

    return await watched(request, work())


@router.post(STORE + "/files", response_model=VectorStoreFile, responses=_MODEL,
             openapi_extra=bodies.openapi_body(VectorStoreFileCreate))  # fmt: skip
async def add_file(request: Request, vector_store_id: str) -> dict:
    body = await bodies.parse(request, VectorStoreFileCreate)
    return await _service(request).add_file(call_context(request), vector_store_id, body)


@router.get(STORE + "/files", response_model=VectorStoreFileList, responses=_READ)
async def list_files(
    request: Request,
    vector_store_id: str,
    limit: int = Limit,
    order: Order = "desc",
    after: str | None = None,
    before: str | None = None,
    filter: Status | None = None,
) -> dict:
    page = {**_page(limit, order, after, before), "status": filter, "batch_id": None}
    return await _service(request).list_files(call_context(request), vector_store_id, **page)


@router.get(STORE + "/files/{file_id}", response_model=VectorStoreFile, responses=_READ)
async def get_file(request: Request, vector_store_id: str, file_id: str) -> dict:
    return await _service(request).get_file(call_context(request), vector_store_id, file_id)


@router.post(STORE + "/files/{file_id}", response_model=VectorStoreFile, responses=_READ,
             openapi_extra=bodies.openapi_body(VectorStoreFileUpdate))  # fmt: skip
async def update_file(request: Request, vector_store_id: str, file_id: str) -> dict:
    body = await bodies.parse(request, VectorStoreFileUpdate)
    ctx = call_context(request)
    return await _service(request).update_file(ctx, vector_store_id, file_id, body)


@router.delete(STORE + "/files/{file_id}", response_model=VectorStoreFileDeleted,
               responses=_READ)  # fmt: skip
async def delete_file(request: Request, vector_store_id: str, file_id: str) -> dict:
    return await _service(request).delete_file(call_context(request), vector_store_id, file_id)


@router.get(STORE + "/files/{file_id}/content", response_model=FileContentPage, responses=_READ)
async def file_content(request: Request, vector_store_id: str, file_id: str) -> dict:
    ctx = call_context(request)
    return await _service(request).file_content(ctx, vector_store_id, file_id)


@router.post(STORE + "/file_batches", response_model=FileBatch, responses=_MODEL,
             openapi_extra=bodies.openapi_body(FileBatchCreate))  # fmt: skip
async def create_batch(request: Request, vector_store_id: str) -> dict:
    body = await bodies.parse(request, FileBatchCreate)
    return await _service(request).create_batch(call_context(request), vector_store_id, body)


@router.get(STORE + "/file_batches/{batch_id}", response_model=FileBatch, responses=_READ)
async def get_batch(request: Request, vector_store_id: str, batch_id: str) -> dict:
    return await _service(request).get_batch(call_context(request), vector_store_id, batch_id)


@router.post(STORE + "/file_batches/{batch_id}/cancel", response_model=FileBatch,
             responses=_READ)  # fmt: skip
async def cancel_batch(request: Request, vector_store_id: str, batch_id: str) -> dict:
    return await _service(request).cancel_batch(call_context(request), vector_store_id, batch_id)


@router.get(STORE + "/file_batches/{batch_id}/files", response_model=VectorStoreFileList,
            responses=_READ)  # fmt: skip
async def batch_files(
    request: Request,
    vector_store_id: str,
    batch_id: str,
    limit: int = Limit,
    order: Order = "desc",
    after: str | None = None,
    before: str | None = None,
    filter: Status | None = None,
) -> dict:
    page = {**_page(limit, order, after, before), "status": filter}
    ctx = call_context(request)
    return await _service(request).batch_files(ctx, vector_store_id, batch_id, **page)
