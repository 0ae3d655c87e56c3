"""The work behind /v1/recommendations, callable without HTTP (training is a job:
``jobs/recommend_train.py``).

A request becomes one row (JSON text) for the model's replica (``runtimes/recommend.py``), so
keys, limits, usage, metrics and batching are those of every model: concurrent requests merge
into one replica call, which the runtime answers with one ``implicit`` call for all their users.
Events a client sends are stored (``registry/recommendations.py``); a user's events stored after
the serving version was registered travel with the user's next request and are folded in by the
replica, so they change the answer at once and every replica answers alike. The next training
job reads them all.

Reading a user's events from the database cost about a third of the server's CPU per request
(py-spy under ``benchmarks/bench_recommend.py``), so they are kept in a ``StateCache``
(``serving/scenarios.py``): this process's ``/events`` writes invalidate it at once, writes
through another server sharing the database are seen within ``reconcile_interval_s``.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from functools import partial

import orjson

from aimass.config import Settings
from aimass.protocols.recommendations import (
    MAX_EVENTS,
    EventsRequest,
    EventsResponse,
    RecommendationRequest,
    RecommendationResponse,
    SimilarRequest,
    SimilarResponse,
)
from aimass.refs import split_model
from aimass.registry import recommendations as events
from aimass.serving.pipeline import CallContext, Pipeline
from aimass.serving.scenarios import (
    Registered,
    Rows,
    StateCache,
    check_count,
    check_task,
    one_row,
)

TASK = "recommendation"
MAX_FOLDED_EVENTS = 500
"""Most recent events of a user folded into one answer."""


class RecommendationService:
    """Recommendations over the engine and the registry; one per app."""

    def __init__(self, pipeline: Pipeline, settings: Settings) -> None:
        self.pipeline = pipeline
        self.url = settings.resolved_database_url
        self.registered = Registered(self.url)
        self.events = StateCache(
            partial(folded_events, self.url), partial(events.users_written_after, self.url),
            settings.reconcile_interval_s,
        )  # fmt: skip

    async def recommend(
        self, ctx: CallContext, req: RecommendationRequest
    ) -> RecommendationResponse:
        name, version = split_model(req.model)
        async with self.pipeline.call(ctx, name, version) as call:
            dep = call.deployment
            check_task(dep, req.model, TASK, "/v1/recommendations")
            since = await self.registered.at(name, dep.spec.version)
            recent = await self.events.get(name, req.user, since)
            filters = {k: [v] if isinstance(v, str) else v for k, v in req.filter.items()}
            request = {"op": "recommend", "user": req.user, "n": req.n, "filter": filters,
                       "exclude_seen": req.exclude_seen, "events": recent}  # fmt: skip
            out = await call.infer(one_row(request))
        answer = orjson.loads(out["result"][0])
        return RecommendationResponse(
            model=req.model, user=req.user, data=answer["items"], fallback=answer["fallback"],
            events_folded_in=len(recent) if answer.get("folded_in") else 0,
        )  # fmt: skip

    async def similar(self, ctx: CallContext, req: SimilarRequest) -> SimilarResponse:
        name, version = split_model(req.model)
        async with self.pipeline.call(ctx, name, version) as call:
            check_task(call.deployment, req.model, TASK, "/v1/recommendations/similar")
            out = await call.infer(one_row({"op": "similar", "item": req.item, "n": req.n}))
        answer = orjson.loads(out["result"][0])
        return SimilarResponse(model=req.model, item=req.item, data=answer["items"])

    async def add_events(self, ctx: CallContext, req: EventsRequest) -> EventsResponse:
        """Store interactions for ``req.model`` (which must serve: the key's access to it is
        checked as for a call)."""
        name, version = split_model(req.model)
        dep = await self.pipeline.resolve(ctx, name, version)
        check_task(dep, req.model, TASK, "/v1/recommendations/events")
        check_count(len(req.events), MAX_EVENTS, "events")
        rows = [
            (e.user, e.item, e.weight,
             None if e.timestamp is None
             else datetime.fromtimestamp(e.timestamp, UTC).replace(tzinfo=None))
            for e in req.events
        ]  # fmt: skip
        try:
            stored = await asyncio.to_thread(events.add_events, self.url, name, rows)
        finally:  # even a failed write may have committed before its thread was told
            self.events.invalidate(name, {e.user for e in req.events})
        return EventsResponse(model=req.model, stored=stored)


def folded_events(url: str, model: str, user: str, since: datetime | None) -> Rows:
    """``user``'s latest events on ``model`` stored after ``since``: (item, weight), oldest
    first."""
    found = events.user_events(url, model, user, since, MAX_FOLDED_EVENTS)
    return tuple((e.item, e.weight) for e in found)
