"""HTTP for /v1/audio/transcriptions, OpenAI's speech-to-text API.

Thin: read the multipart form (``server/uploads.py``), validate its fields, hand the file to
``serving.audio.AudioService`` with the call context, write the answer in the requested
``response_format`` or, with ``stream``, as server-sent events.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from aimass.protocols.audio import (
    Transcription,
    TranscriptionForm,
    TranscriptionVerbose,
    TranscriptStreamEvent,
)
from aimass.server import body as bodies
from aimass.server.context import call_context, watched
from aimass.server.openai.completions import SSE_HEADERS
from aimass.server.openapi import errors, event_stream
from aimass.server.uploads import multipart_body, read_upload
from aimass.serving import audio
from aimass.serving.audio import AudioService

router = APIRouter()

GRANULARITIES = "timestamp_granularities[]"

_FORM = multipart_body(
    {
        "file": {"type": "string", "format": "binary", "description": "wav, mp3, flac, ogg, "
                 "webm or m4a"},
        "model": {"type": "string", "minLength": 1},
        "language": {"type": "string", "maxLength": 32},
        "prompt": {"type": "string", "maxLength": 4096},
        "temperature": {"type": "number", "minimum": 0, "maximum": 1},
        "response_format": {"type": "string",
                            "enum": ["json", "text", "srt", "verbose_json", "vtt"]},
        GRANULARITIES: {"type": "array", "maxItems": 2,
                        "items": {"type": "string", "enum": ["word", "segment"]}},
        "stream": {"type": "boolean"},
    },
    ["file", "model"],
)  # fmt: skip
_TEXT = {"schema": {"type": "string"}}
_ANSWERS = {
    "200": {
        "description": "The transcript in the requested response_format, or (stream) its events",
        "content": {"text/plain": _TEXT, "text/vtt": _TEXT, **event_stream(TranscriptStreamEvent)},
    }
}


def _service(request: Request) -> AudioService:
    return request.app.state.audio


@router.post("/v1/audio/transcriptions", response_model=Transcription | TranscriptionVerbose,
             responses=errors("v1", 400, 403, 404, 413, 429, 503, 504),
             openapi_extra={**_FORM, "responses": _ANSWERS})  # fmt: skip
async def transcriptions(request: Request) -> Response:
    upload = await read_upload(request, "file")
    fields: dict = upload.first()
    granularities = upload.fields.get(GRANULARITIES, []) + upload.fields.get(GRANULARITIES[:-2], [])
    form = bodies.validate(TranscriptionForm, {**fields, "timestamp_granularities": granularities})
    return await watched(request, _answer(request, form, upload.file or b""))


async def _answer(request: Request, form: TranscriptionForm, data: bytes) -> Response:
    transcript = await _service(request).transcribe(call_context(request), form, data)
    if form.stream:
        return StreamingResponse(
            audio.events(transcript), media_type="text/event-stream", headers=SSE_HEADERS
        )
    content, media_type = audio.render(form, transcript)
    return Response(content, media_type=media_type)
