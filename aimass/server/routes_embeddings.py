"""HTTP for /v1/embeddings (OpenAI) and /v1/rerank (Jina / Cohere / Xinference shape).

Thin: parse, check access, hand the request to ``EmbeddingsService``, record usage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from aimass.protocols.embeddings import EmbeddingRequest, RerankRequest
from aimass.server.deps import check_model_access, record_usage
from aimass.server.disconnect import ClientDisconnected, unless_disconnected
from aimass.server.serving_embeddings import EmbeddingsService, estimate_tokens, split_model

router = APIRouter()


def _service(request: Request) -> EmbeddingsService:
    state = request.app.state
    service = getattr(state, "embeddings_service", None)
    if service is None:
        service = state.embeddings_service = EmbeddingsService(state.manager, state.settings)
    return service


async def _run(
    request: Request, body: BaseModel, work: Callable[[], Awaitable[dict]], estimate: int
) -> Response:
    """Access check, the work (cancelled if the client leaves), usage; ``work`` is a factory."""
    name, _ = split_model(body.model)
    await check_model_access(request, name, estimate)
    try:
        answer = await unless_disconnected(request, work())
    except ClientDisconnected:
        return Response(status_code=499)
    except Exception:
        record_usage(request, name, error=True)
        raise
    record_usage(request, name, prompt_tokens=answer["usage"]["prompt_tokens"])
    return JSONResponse(answer)


@router.post("/v1/embeddings")
async def embeddings(request: Request, body: EmbeddingRequest) -> Response:
    service = _service(request)
    estimate = estimate_tokens(body.items())
    return await _run(request, body, lambda: service.embeddings(body), estimate)


@router.post("/v1/rerank")
async def rerank(request: Request, body: RerankRequest) -> Response:
    service = _service(request)
    estimate = estimate_tokens([body.query, *body.texts()])
    return await _run(request, body, lambda: service.rerank(body), estimate)
