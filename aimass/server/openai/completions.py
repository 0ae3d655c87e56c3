"""OpenAI text generation routes: POST /v1/completions and POST /v1/chat/completions.

Thin: parse the body into the wire type (400 naming the bad field), hand it to
``serving.llm.LLMService`` with the call context, and write a JSON answer or an SSE stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from aimass.protocols import openai as oa
from aimass.server import body as bodies
from aimass.server.context import call_context, watched
from aimass.server.fastpath import fast
from aimass.server.openapi import errors, event_stream
from aimass.serving.llm import LLMService

router = APIRouter()

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _service(request: Request) -> LLMService:
    return request.app.state.llm


def _respond(answer: dict[str, Any] | AsyncIterator[str]) -> Response:
    if isinstance(answer, dict):
        return Response(orjson.dumps(answer), media_type="application/json")
    return StreamingResponse(answer, media_type="text/event-stream", headers=SSE_HEADERS)


_ERRORS = errors("v1", 400, 403, 404, 429, 503, 504)


def _doc(request: type[BaseModel], chunk: type[BaseModel]) -> dict:
    answer = {"description": "The answer, or (stream) its chunks", "content": event_stream(chunk)}
    return {**bodies.openapi_body(request), "responses": {"200": answer}}


@fast
@router.post("/v1/completions", response_model=oa.CompletionResponse, responses=_ERRORS,
             openapi_extra=_doc(oa.CompletionRequest, oa.CompletionResponse))  # fmt: skip
async def completions(request: Request) -> Response:
    body = await bodies.parse(request, oa.CompletionRequest)
    ctx = call_context(request)
    return await watched(request, _answer(_service(request).completion(ctx, body)))


@fast
@router.post("/v1/chat/completions", response_model=oa.ChatCompletionResponse,
             responses=_ERRORS,
             openapi_extra=_doc(oa.ChatCompletionRequest, oa.ChatCompletionChunk))  # fmt: skip
async def chat_completions(request: Request) -> Response:
    body = await bodies.parse(request, oa.ChatCompletionRequest)
    ctx = call_context(request)
    return await watched(request, _answer(_service(request).chat(ctx, body)))


async def _answer(work) -> Response:
    return _respond(await work)
