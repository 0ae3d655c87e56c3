"""The work behind /v1/forecasts, callable without HTTP (training is a job:
``jobs/forecast_train.py``).

A request becomes one row (JSON text) for the model's replica (``runtimes/forecast.py``).
Observations a client appends are stored (``registry/forecasts.py``); those of a series stored
after the serving version was registered travel with its next request, and the replica
re-applies the fitted model to the extended series, so later forecasts start from them. They
are read through a ``StateCache`` (``serving/scenarios.py``), not from the database on every
request; this process's appends invalidate it at once.
"""

from __future__ import annotations

import asyncio
from functools import partial

import orjson

from aimass.config import Settings
from aimass.protocols.forecasts import (
    MAX_POINTS,
    ForecastRequest,
    ForecastResponse,
    ObservationsRequest,
    ObservationsResponse,
)
from aimass.refs import split_model
from aimass.registry import forecasts as stored
from aimass.serving.pipeline import CallContext, Pipeline
from aimass.serving.scenarios import (
    Registered,
    StateCache,
    check_count,
    check_task,
    one_row,
)

TASK = "forecasting"
MAX_APPENDED = 10_000
"""Most recent stored observations of a series used by one forecast."""


class ForecastService:
    """Forecasts over the engine and the registry; one per app."""

    def __init__(self, pipeline: Pipeline, settings: Settings) -> None:
        self.pipeline = pipeline
        self.url = settings.resolved_database_url
        self.registered = Registered(self.url)
        self.observations = StateCache(
            lambda name, sid, since: tuple(
                stored.observations(self.url, name, sid, since, MAX_APPENDED)
            ),
            partial(stored.series_written_after, self.url),
            settings.reconcile_interval_s,
        )

    async def forecast(self, ctx: CallContext, req: ForecastRequest) -> ForecastResponse:
        name, version = split_model(req.model)
        async with self.pipeline.call(ctx, name, version) as call:
            dep = call.deployment
            check_task(dep, req.model, TASK, "/v1/forecasts")
            check_count(len(req.history or []), MAX_POINTS, "history")
            appended: tuple = ()
            if req.series_id is not None:
                since = await self.registered.at(name, dep.spec.version)
                appended = await self.observations.get(name, req.series_id, since)
            history = [[p.timestamp, p.value] for p in req.history or []]
            request = {"series_id": req.series_id, "history": history, "horizon": req.horizon,
                       "level": req.level, "observations": appended,
                       "future": req.future}  # fmt: skip
            out = await call.infer(one_row(request))
        answer = orjson.loads(out["result"][0])
        return ForecastResponse(
            model=req.model, series_id=req.series_id, timestamps=answer["timestamps"],
            mean=answer["mean"], intervals=answer["intervals"], method=answer["model"],
            observations_used=answer["observations_used"],
        )  # fmt: skip

    async def append(self, ctx: CallContext, req: ObservationsRequest) -> ObservationsResponse:
        """Store observations for ``req.model`` (which must serve; the key's access to it is
        checked as for a call)."""
        name, version = split_model(req.model)
        dep = await self.pipeline.resolve(ctx, name, version)
        check_task(dep, req.model, TASK, "/v1/forecasts/observations")
        check_count(len(req.observations), MAX_POINTS, "observations")
        points = [(o.series_id, o.timestamp, o.value) for o in req.observations]
        try:
            count = await asyncio.to_thread(stored.add_observations, self.url, name, points)
        finally:  # even a failed write may have committed before its thread was told
            self.observations.invalidate(name, {o.series_id for o in req.observations})
        return ObservationsResponse(model=req.model, stored=count)
