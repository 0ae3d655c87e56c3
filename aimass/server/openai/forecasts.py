"""HTTP for /v1/forecasts (an AI Mass extension) and ``POST /v1/forecasts/models``.

Thin: parse the body, hand it to ``serving.forecasts.ForecastService`` with the call context.
Training runs later, as a job (``/v1/jobs/{id}``).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from aimass.jobs.forecast_train import KIND
from aimass.jobs.scenario_train import start_training
from aimass.protocols.forecasts import (
    ForecasterCreate,
    ForecastRequest,
    ForecastResponse,
    ObservationsRequest,
    ObservationsResponse,
)
from aimass.protocols.jobs import Job
from aimass.server import body as bodies
from aimass.server.context import call_context, watched
from aimass.server.fastpath import fast
from aimass.server.openai.recommendations import as_json
from aimass.server.openapi import errors
from aimass.serving.forecasts import ForecastService

router = APIRouter()


def _service(request: Request) -> ForecastService:
    return request.app.state.forecasts


@router.post("/v1/forecasts/models", response_model=Job, responses=errors("v1", 400, 404, 429),
             openapi_extra=bodies.openapi_body(ForecasterCreate))  # fmt: skip
async def train_forecaster(request: Request) -> Job:
    body = await bodies.parse(request, ForecasterCreate)
    state = request.app.state
    return await start_training(state.runner, state.files, call_context(request), KIND, body,
                                ("training_file",))  # fmt: skip


@fast
@router.post("/v1/forecasts", response_model=ForecastResponse,
             responses=errors("v1", 400, 403, 404, 413, 429, 503, 504),
             openapi_extra=bodies.openapi_body(ForecastRequest))  # fmt: skip
async def forecast(request: Request) -> Response:
    body = await bodies.parse(request, ForecastRequest)
    ctx = call_context(request)
    return await watched(request, as_json(_service(request).forecast(ctx, body)))


@router.post("/v1/forecasts/observations", response_model=ObservationsResponse,
             responses=errors("v1", 400, 403, 404, 413, 429, 503),
             openapi_extra=bodies.openapi_body(ObservationsRequest))  # fmt: skip
async def append_observations(request: Request) -> ObservationsResponse:
    body = await bodies.parse(request, ObservationsRequest)
    return await _service(request).append(call_context(request), body)
