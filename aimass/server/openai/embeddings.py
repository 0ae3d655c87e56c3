"""HTTP for /v1/embeddings (OpenAI) and /v1/rerank (Jina / Cohere / Xinference shape).

Thin: parse, check access, hand the request to ``EmbeddingsService``, record usage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from aimass.protocols.embeddings import EmbeddingRequest, RerankRequest
from aimass.server.deps import check_model_access, record_usage
from aimass.server.disconnect import ClientDisconnected, unless_disconnected
from aimass.server.timeouts import request_timeout_s
from aimass.serving.embeddings import (
    EmbeddingsService,
    estimate_tokens,
    render,
    split_model,
)

router = APIRouter()
B = TypeVar("B", bound=BaseModel)


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
    return Response(render(answer), media_type="application/json")


def _schema(model: type[BaseModel]) -> dict:
    """Document the JSON body that the handler parses itself (see ``_parse``)."""
    schema = model.model_json_schema()
    schema = _inline(schema, schema.pop("$defs", {}))
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _inline(node, defs: dict):
    """Replace local ``$ref``s by their definitions: the body schema must stand alone."""
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/$defs/"):
            return _inline(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


async def _parse(request: Request, model: type[B]) -> B:
    """Validate the raw body in one step; pydantic's error is rendered as a 400 by the app.

    Parsing here instead of through a FastAPI body parameter skips its dependency solving,
    a measurable share of the server's CPU at a thousand small requests a second.
    """
    return model.model_validate_json(await request.body())


@router.post("/v1/embeddings", openapi_extra=_schema(EmbeddingRequest))
async def embeddings(request: Request) -> Response:
    body = await _parse(request, EmbeddingRequest)
    service = _service(request)
    timeout_s = request_timeout_s(request)
    estimate = estimate_tokens(body.items())
    return await _run(request, body, lambda: service.embeddings(body, timeout_s), estimate)


@router.post("/v1/rerank", openapi_extra=_schema(RerankRequest))
async def rerank(request: Request) -> Response:
    body = await _parse(request, RerankRequest)
    service = _service(request)
    timeout_s = request_timeout_s(request)
    estimate = estimate_tokens([body.query, *body.texts()])
    return await _run(request, body, lambda: service.rerank(body, timeout_s), estimate)
