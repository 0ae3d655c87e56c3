"""HTTP for /v1/files (OpenAI's Files API): upload, list, retrieve, content, delete.

Thin: the upload's form is read as it streams (``server/uploads.py``) into the file the
service opens; everything else is a call to ``serving.files.FilesService`` with the call
context. Content is streamed back from storage, a megabyte at a time, always as
``application/octet-stream`` (an uploaded HTML page is never served as a page).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import iterate_in_threadpool
from starlette.requests import ClientDisconnect

from aimass.protocols.files import (
    MAX_LIST_LIMIT,
    FileDeleted,
    FileList,
    FileListQuery,
    FileObject,
    FileUploadForm,
)
from aimass.server.context import CLIENT_CLOSED, call_context
from aimass.server.openapi import errors
from aimass.server.uploads import receive_upload
from aimass.serving.files import FilesService

router = APIRouter()

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file", "purpose"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        **FileUploadForm.model_json_schema(by_alias=True)["properties"],
                    },
                }
            }
        },
    }
}
_BYTES = {
    "description": "The file's bytes, as uploaded",
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}},
}


def _service(request: Request) -> FilesService:
    return request.app.state.files


@router.post("/v1/files", response_model=FileObject, responses=errors("v1", 400, 413),
             openapi_extra=_UPLOAD_BODY)  # fmt: skip
async def upload_file(request: Request) -> FileObject | Response:
    service, ctx = _service(request), call_context(request)
    try:
        upload, fields = await receive_upload(
            request, lambda name, ctype: service.begin_upload(ctx, name, ctype)
        )
    except ClientDisconnect:
        return Response(status_code=CLIENT_CLOSED)
    return await service.finish_upload(
        upload,
        fields.get("purpose"),
        fields.get("expires_after[anchor]"),
        fields.get("expires_after[seconds]"),
    )


@router.get("/v1/files", response_model=FileList, responses=errors("v1", 400, 404))
async def list_files(
    request: Request,
    purpose: str | None = None,
    after: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = MAX_LIST_LIMIT,
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
) -> FileList:
    query = FileListQuery(purpose=purpose, after=after, limit=limit, order=order)
    return await _service(request).list(call_context(request), query)


@router.get("/v1/files/{file_id}", response_model=FileObject, responses=errors("v1", 404))
async def retrieve_file(request: Request, file_id: str) -> FileObject:
    return await _service(request).retrieve(call_context(request), file_id)


@router.get("/v1/files/{file_id}/content", response_class=StreamingResponse,
            responses={200: _BYTES, **errors("v1", 404)})  # fmt: skip
async def file_content(request: Request, file_id: str) -> StreamingResponse:
    record, pieces = await _service(request).content(call_context(request), file_id)
    name = quote(record.filename, safe="")
    return StreamingResponse(
        iterate_in_threadpool(pieces),
        media_type="application/octet-stream",
        headers={
            "Content-Length": str(record.bytes),
            "Content-Disposition": f"attachment; filename*=UTF-8''{name}",
        },
    )


@router.delete("/v1/files/{file_id}", response_model=FileDeleted, responses=errors("v1", 404))
async def delete_file(request: Request, file_id: str) -> FileDeleted:
    return await _service(request).delete(call_context(request), file_id)
