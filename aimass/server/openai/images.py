"""HTTP for /v1/images/classifications: images in (JSON data URLs / base64, or the files of a
multipart form), the top classes of each out.

Thin: read the images from either body, hand them to ``serving.vision.VisionService`` with the
call context, write the answer. A form carries one or more files, each in a field ``file``,
and the text fields ``model`` and ``top_k``.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from aimass.errors import InvalidInput
from aimass.protocols.images import (
    ClassificationForm,
    ClassificationRequest,
    ClassificationResponse,
)
from aimass.server import body as bodies
from aimass.server.context import call_context, watched
from aimass.server.fastpath import fast
from aimass.server.openapi import errors
from aimass.server.uploads import MULTIPART, is_multipart, multipart_body
from aimass.serving.vision import Image, VisionService

router = APIRouter()

FILE_FIELD = "file"
_FORM = multipart_body(
    {
        FILE_FIELD: {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "one or more images: PNG, JPEG, WebP, GIF, BMP or TIFF",
        },
        "model": {"type": "string", "minLength": 1},
        "top_k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5},
    },
    [FILE_FIELD, "model"],
)
_BODY = bodies.openapi_body(ClassificationRequest)
_BODY["requestBody"]["content"][MULTIPART] = _FORM["requestBody"]["content"][MULTIPART]


def _service(request: Request) -> VisionService:
    return request.app.state.vision


@fast
@router.post("/v1/images/classifications", response_model=ClassificationResponse,
             responses=errors("v1", 400, 403, 404, 413, 429, 503, 504),
             openapi_extra=_BODY)  # fmt: skip
async def classifications(request: Request) -> Response:
    if is_multipart(request):
        form, images = await _read_form(request)
        model, top_k = form.model, form.top_k
    else:
        body = await bodies.parse(request, ClassificationRequest)
        model, top_k, images = body.model, body.top_k, [i.image for i in body.images]
    work = _service(request).classify(call_context(request), model, images, top_k)
    return await watched(request, _json(work))


async def _read_form(request: Request) -> tuple[ClassificationForm, list[Image]]:
    """The form's text fields and its files, in order (400 when it has none)."""
    most = request.app.state.settings.max_items_per_request
    fields: dict[str, str] = {}
    images: list[Image] = []
    try:
        async with request.form(max_files=most, max_fields=32, max_part_size=64 * 1024) as form:
            for name, value in form.multi_items():
                if not isinstance(value, UploadFile):
                    fields.setdefault(name, value)
                elif name == FILE_FIELD:
                    images.append(await value.read())
                else:
                    raise InvalidInput(
                        f"unexpected file in field {name!r}; send images as {FILE_FIELD!r}",
                        param=name,
                    )
    except (MultiPartException, HTTPException) as exc:
        detail = getattr(exc, "message", None) or getattr(exc, "detail", "")
        raise InvalidInput(f"the form cannot be read: {detail}", param=FILE_FIELD) from None
    if not images:
        raise InvalidInput(f"field {FILE_FIELD!r} (an image file) is required", param=FILE_FIELD)
    return bodies.validate(ClassificationForm, fields), images


async def _json(work) -> Response:
    return Response(orjson.dumps(await work), media_type="application/json")
