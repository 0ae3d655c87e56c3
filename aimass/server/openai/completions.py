"""OpenAI text generation routes: POST /v1/completions and POST /v1/chat/completions.

Thin: parse the body into the wire type (400 naming the bad field), then hand over to
``serving_llm.OpenAIServing``. Errors are ``AimassError``s, rendered in OpenAI's shape by
the app's single error handler.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ValidationError

from aimass.errors import InvalidInput
from aimass.protocols import openai as oa
from aimass.serving.llm import OpenAIServing

router = APIRouter()

M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, model: type[M]) -> M:
    """Validate the JSON body; a bad body is a 400 that names the field and the problem."""
    try:
        data: Any = orjson.loads(await request.body())
    except ValueError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}") from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(f"{loc}: {first['msg']}", param=loc) from exc


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    body = await parse_body(request, oa.CompletionRequest)
    return await OpenAIServing(request).completion(body)


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    body = await parse_body(request, oa.ChatCompletionRequest)
    return await OpenAIServing(request).chat(body)
