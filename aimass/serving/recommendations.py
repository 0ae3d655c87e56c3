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
(py-spy under ``benchmarks/bench_recommend.py``), so they are kept in ``UserEvents``, an LRU
cache that this process's ``/events`` writes invalidate at once; writes through another server
sharing the database are seen within ``reconcile_interval_s``, as other registry changes are.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

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
from aimass.serving.scenarios import Registered, check_count, check_task, one_row

TASK = "recommendation"
MAX_FOLDED_EVENTS = 500
"""Most recent events of a user folded into one answer."""
CACHED_EVENTS = 200_000
"""Most events ``UserEvents`` holds (a user with none counts as one), about 20 MB."""
KNOWN_WRITERS = 200_000
"""Most users with events ``UserEvents`` keeps the names of per model; past it, every user not
cached is read from the database."""

Folded = tuple[tuple[str, float], ...]
"""A user's recent events as (item, weight) pairs, oldest first."""


class UserEvents:
    """The events of each (model, user) stored after the serving version was registered, read
    from the database once and then served from memory (least recently used out first).

    ``invalidate`` (after an ``/events`` write commits) drops the users written, and a read
    that was under way while any write happened is not kept: it may predate the write. So the
    request after a write always reads it. Every ``sync_s`` a request first asks the database
    which users of its model got events since the last look (one query: writes made through
    other servers) and drops those too.

    The first look at a model reads which users have any events (up to ``KNOWN_WRITERS``), so
    a user with none, most users between two trainings, costs no read at all."""

    def __init__(self, url: str, sync_s: float, capacity: int = CACHED_EVENTS) -> None:
        self.url = url
        self.sync_s = sync_s
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._held = 0
        self._writes = 0  # invalidations so far: a read overlapping one is not kept
        self._synced: dict[str, tuple[float, int]] = {}  # model: (when, latest event id seen)
        self._writers: dict[str, set[str] | None] = {}  # model: users with events (None: many)
        self._syncing = asyncio.Lock()

    @property
    def held(self) -> int:
        """Events held now (a user with none counts as one); at most ``capacity``."""
        return self._held

    async def get(self, model: str, user: str, since: datetime | None) -> Folded:
        """``user``'s latest ``MAX_FOLDED_EVENTS`` events on ``model`` stored after ``since``
        (the serving version's registration: a new version reads them afresh)."""
        await self._sync(model)
        writers = self._writers.get(model)
        if writers is not None and user not in writers:
            return ()
        key = (model, user)
        entry = self._entries.get(key)
        if entry is not None and entry.since == since:
            self._entries.move_to_end(key)
            return entry.folded
        writes = self._writes
        found = await asyncio.to_thread(
            events.user_events, self.url, model, user, since, MAX_FOLDED_EVENTS
        )
        folded = tuple((e.item, e.weight) for e in found)
        if writes == self._writes:
            self._put(key, _Entry(since, folded))
        return folded

    async def _sync(self, model: str) -> None:
        if self._due(model):
            async with self._syncing:
                if self._due(model):
                    first, writes = model not in self._synced, self._writes
                    after = None if first else self._synced[model][1]
                    users, latest = await asyncio.to_thread(
                        events.users_written_after, self.url, model, after
                    )
                    if first and writes != self._writes:
                        return  # a write may have missed this first look: look again
                    if first:
                        self._writers[model] = users if len(users) <= KNOWN_WRITERS else None
                    elif users:
                        self.invalidate(model, users)
                    self._synced[model] = (time.monotonic(), latest)

    def _due(self, model: str) -> bool:
        synced = self._synced.get(model)
        return synced is None or time.monotonic() - synced[0] >= self.sync_s

    def invalidate(self, model: str, users: set[str]) -> None:
        """Forget ``users`` of ``model``: their next request reads the database."""
        self._writes += 1
        for user in users:
            self._drop((model, user))
        writers = self._writers.get(model)
        if writers is not None:
            writers |= users
            if len(writers) > KNOWN_WRITERS:
                self._writers[model] = None

    def _put(self, key: tuple[str, str], entry: _Entry) -> None:
        self._drop(key)
        self._entries[key] = entry
        self._held += entry.weight
        while self._held > self.capacity:
            self._held -= self._entries.popitem(last=False)[1].weight

    def _drop(self, key: tuple[str, str]) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._held -= entry.weight


@dataclass(frozen=True, slots=True)
class _Entry:
    since: datetime | None
    folded: Folded

    @property
    def weight(self) -> int:
        """What the entry counts against ``CACHED_EVENTS`` (a user with no events counts 1)."""
        return max(1, len(self.folded))


class RecommendationService:
    """Recommendations over the engine and the registry; one per app."""

    def __init__(self, pipeline: Pipeline, settings: Settings) -> None:
        self.pipeline = pipeline
        self.url = settings.resolved_database_url
        self.registered = Registered(self.url)
        self.events = UserEvents(self.url, settings.reconcile_interval_s)

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
