"""HTTP for /v1/recommendations (an AI Mass extension) and ``POST /v1/recommendations/models``.

Thin: parse the body, hand it to ``serving.recommendations.RecommendationService`` with the
call context. Training runs later, as a job (``/v1/jobs/{id}``).
"""

from __future__ import annotations

from collections.abc import Awaitable

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from aimass.jobs.recommend_train import KIND
from aimass.jobs.scenario_train import start_training
from aimass.protocols.jobs import Job
from aimass.protocols.recommendations import (
    EventsRequest,
    EventsResponse,
    RecommendationRequest,
    RecommendationResponse,
    RecommenderCreate,
    SimilarRequest,
    SimilarResponse,
)
from aimass.server import body as bodies
from aimass.server.context import call_context, watched
from aimass.server.fastpath import fast
from aimass.server.openapi import errors
from aimass.serving.recommendations import RecommendationService

router = APIRouter()

_ERRORS = errors("v1", 400, 403, 404, 429, 503, 504)


def _service(request: Request) -> RecommendationService:
    return request.app.state.recommendations


async def as_json(work: Awaitable[BaseModel]) -> Response:
    """A pydantic answer as JSON (the fast routes return a Response)."""
    return Response((await work).model_dump_json(), media_type="application/json")


@router.post(
    "/v1/recommendations/models",
    response_model=Job,
    responses=errors("v1", 400, 404, 429),
    openapi_extra=bodies.openapi_body(RecommenderCreate),
)
async def train_recommender(request: Request) -> Job:
    body = await bodies.parse(request, RecommenderCreate)
    state = request.app.state
    return await start_training(state.runner, state.files, call_context(request), KIND, body,
                                ("training_file", "items_file"))  # fmt: skip


@fast
@router.post("/v1/recommendations", response_model=RecommendationResponse, responses=_ERRORS,
             openapi_extra=bodies.openapi_body(RecommendationRequest))  # fmt: skip
async def recommend(request: Request) -> Response:
    body = await bodies.parse(request, RecommendationRequest)
    ctx = call_context(request)
    return await watched(request, as_json(_service(request).recommend(ctx, body)))


@fast
@router.post("/v1/recommendations/similar", response_model=SimilarResponse, responses=_ERRORS,
             openapi_extra=bodies.openapi_body(SimilarRequest))  # fmt: skip
async def similar(request: Request) -> Response:
    body = await bodies.parse(request, SimilarRequest)
    ctx = call_context(request)
    return await watched(request, as_json(_service(request).similar(ctx, body)))


@router.post("/v1/recommendations/events", response_model=EventsResponse,
             responses=errors("v1", 400, 403, 404, 413, 429, 503),
             openapi_extra=bodies.openapi_body(EventsRequest))  # fmt: skip
async def add_events(request: Request) -> EventsResponse:
    body = await bodies.parse(request, EventsRequest)
    return await _service(request).add_events(call_context(request), body)
