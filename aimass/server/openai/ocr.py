"""HTTP for /v1/ocr: an image (multipart ``file``, or JSON ``image`` as a data URL or base64)
in, its text lines out.

Thin: read the image's bytes from either body, hand them to ``serving.ocr.OcrService`` with
the call context, write the answer.
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request, Response

from aimass.media.image import image_from_data_url
from aimass.protocols.ocr import OcrForm, OcrRequest, OcrResponse
from aimass.server import body as bodies
from aimass.server.context import call_context, watched
from aimass.server.openapi import errors
from aimass.server.uploads import MULTIPART, is_multipart, multipart_body, read_upload
from aimass.serving.ocr import OcrService

router = APIRouter()

_FORM = multipart_body(
    {
        "file": {"type": "string", "format": "binary",
                 "description": "PNG, JPEG, WebP, GIF, BMP or TIFF"},
        "model": {"type": "string", "minLength": 1},
    },
    ["file", "model"],
)  # fmt: skip
_BODY = bodies.openapi_body(OcrRequest)
_BODY["requestBody"]["content"][MULTIPART] = _FORM["requestBody"]["content"][MULTIPART]


def _service(request: Request) -> OcrService:
    return request.app.state.ocr


@router.post("/v1/ocr", response_model=OcrResponse,
             responses=errors("v1", 400, 403, 404, 413, 429, 503, 504),
             openapi_extra=_BODY)  # fmt: skip
async def ocr(request: Request) -> Response:
    if is_multipart(request):
        upload = await read_upload(request, "file")
        model, image = bodies.validate(OcrForm, upload.first()).model, upload.file or b""
    else:
        body = await bodies.parse(request, OcrRequest)
        model, image = body.model, image_from_data_url(body.image)
    return await watched(
        request, _json(_service(request).read(call_context(request), model, image))
    )


async def _json(work) -> Response:
    return Response(orjson.dumps(await work), media_type="application/json")
