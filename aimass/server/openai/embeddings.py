"""HTTP for /v1/embeddings (OpenAI) and /v1/rerank (Jina / Cohere / Xinference shape).

Thin: parse the body, hand it to ``serving.embeddings.EmbeddingsService`` with the call
context, write the answer.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from aimass.protocols.embeddings import (
    EmbeddingRequest,
    EmbeddingResponse,
    RerankRequest,
    RerankResponse,
)
from aimass.server import body as bodies
from aimass.server.context import call_context, watched
from aimass.server.fastpath import fast
from aimass.server.openapi import errors
from aimass.serving.embeddings import EmbeddingsService, render

router = APIRouter()

_ERRORS = errors("v1", 400, 403, 404, 429, 503, 504)


def _service(request: Request) -> EmbeddingsService:
    return request.app.state.embeddings


async def _json(work) -> Response:
    return Response(render(await work), media_type="application/json")


@fast
@router.post("/v1/embeddings", response_model=EmbeddingResponse, responses=_ERRORS,
             openapi_extra=bodies.openapi_body(EmbeddingRequest))  # fmt: skip
async def embeddings(request: Request) -> Response:
    body = await bodies.parse(request, EmbeddingRequest)
    ctx = call_context(request)
    return await watched(request, _json(_service(request).embeddings(ctx, body)))


@fast
@router.post("/v1/rerank", response_model=RerankResponse, responses=_ERRORS,
             openapi_extra=bodies.openapi_body(RerankRequest))  # fmt: skip
async def rerank(request: Request) -> Response:
    body = await bodies.parse(request, RerankRequest)
    ctx = call_context(request)
    return await watched(request, _json(_service(request).rerank(ctx, body)))
