"""What the scenario services (recommendations, forecasts) share: one JSON row per request,
the task check, when a version was registered (state stored later is new to it), and the
cache of that state (a user's events, a series' observations) read once, not per request."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson

from aimass.engine.deployment import Deployment
from aimass.errors import InvalidInput, NotFound, PayloadTooLarge
from aimass.registry import models as registry


def check_task(dep: Deployment, ref: str, task: str, path: str) -> None:
    if dep.spec.task != task:
        raise InvalidInput(
            f"model {ref!r} has task {dep.spec.task!r}; {path} needs a {task!r} model",
            param="model",
        )


def check_count(count: int, limit: int, param: str) -> None:
    """A 413 naming ``param`` when a request carries more than ``limit`` items."""
    if count > limit:
        raise PayloadTooLarge(f"{param} has {count} items; the limit is {limit}", param=param)


def one_row(request: dict[str, Any]) -> dict[str, np.ndarray]:
    """A payload of one request as JSON text (the scenario runtimes' ``request`` input)."""
    rows = np.empty(1, dtype=object)
    rows[0] = orjson.dumps(request).decode()
    return {"request": rows}


class Registered:
    """When each ``name:version`` was registered, read once from the registry."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._at: dict[tuple[str, int], datetime | None] = {}

    async def at(self, name: str, version: int) -> datetime | None:
        key = (name, version)
        if key not in self._at:
            try:
                entry = await asyncio.to_thread(registry.get_model, self.url, name, version)
            except NotFound:
                return None
            self._at[key] = entry.created_at
        return self._at[key]


CACHED_ROWS = 200_000
"""Most stored rows a ``StateCache`` holds (a key with none counts as one): some 20 MB."""
KNOWN_KEYS = 200_000
"""Most keys with stored rows a ``StateCache`` keeps the names of per model; past it, every
key not cached is read from the database."""
COMMIT_LAG_S = 30.0
"""How long a write may take between drawing its row id and committing. PostgreSQL hands out
ids in insert order but rows become visible in commit order, so a row can appear below the
latest id a look has already seen; every look therefore re-reads the ids drawn since a look at
least this old (the keys it finds again cost one more read each)."""

Rows = tuple[tuple[Any, ...], ...]
"""What one key has stored since its serving version was registered, oldest first."""


class StateCache:
    """The rows each key of a model (a user's events, a series' observations) has stored after
        the serving version was registered, read from the database once and then served from
        memory, least recently used out first.

        ``invalidate`` (called once a write through this server committed) drops the keys
        written, and a read under way while any write happened is not kept: it may predate the
        write. So the request after a write reads it. Every ``sync_s`` a request first asks the
        database which keys of its model got rows since a look ``COMMIT_LAG_S`` ago (one query:
        writes made through other servers, including ones that committed after a later id was
        seen) and drops those too. The first look at a model reads which keys have rows at all (up
        to ``KNOWN_KEYS``), so a key with none costs no read; until it is ``COMMIT_LAG_S`` old,
        later looks go back to its id (a row whose transaction was open during that first look and
    commits after it below its latest id is the one write a look can miss).

        ``read(model, key, since)`` and ``written_after(model, after_id)`` are blocking registry
        functions (run in a thread); ``written_after`` returns the keys and the latest row id."""

    def __init__(
        self,
        read: Callable[[str, str, datetime | None], Rows],
        written_after: Callable[[str, int | None], tuple[set[str], int]],
        sync_s: float,
        capacity: int = CACHED_ROWS,
    ) -> None:
        self.read = read
        self.written_after = written_after
        self.sync_s = sync_s
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self._held = 0
        self._writes = 0  # invalidations so far: a read overlapping one is not kept
        self._synced: dict[str, float] = {}  # model: when it was last looked at
        self._marks: dict[str, deque[tuple[float, int]]] = {}  # model: (when, latest id seen)
        self._written: dict[str, set[str] | None] = {}  # model: keys with rows (None: many)
        self._syncing = asyncio.Lock()

    @property
    def held(self) -> int:
        """Rows held now (a key with none counts as one); at most ``capacity``."""
        return self._held

    async def get(self, model: str, key: str, since: datetime | None) -> Rows:
        """What ``key`` of ``model`` stored after ``since`` (the serving version's
        registration: a new version reads it afresh)."""
        await self._sync(model)
        written = self._written.get(model)
        if written is not None and key not in written:
            return ()
        entry = self._entries.get((model, key))
        if entry is not None and entry.since == since:
            self._entries.move_to_end((model, key))
            return entry.rows
        writes = self._writes
        rows = await asyncio.to_thread(self.read, model, key, since)
        if writes == self._writes:
            self._put((model, key), _Entry(since, rows))
        return rows

    def invalidate(self, model: str, keys: set[str]) -> None:
        """Forget ``keys`` of ``model``: their next request reads the database."""
        self._writes += 1
        for key in keys:
            self._drop((model, key))
        written = self._written.get(model)
        if written is not None:
            written |= keys
            if len(written) > KNOWN_KEYS:
                self._written[model] = None

    async def _sync(self, model: str) -> None:
        if not self._due(model):
            return
        async with self._syncing:
            if not self._due(model):
                return
            first, writes, now = model not in self._synced, self._writes, time.monotonic()
            marks = self._marks.setdefault(model, deque())
            while len(marks) > 1 and now - marks[1][0] >= COMMIT_LAG_S:
                marks.popleft()  # marks[0]: the newest look at least COMMIT_LAG_S old
            after = marks[0][1] if marks else None
            keys, latest = await asyncio.to_thread(self.written_after, model, after)
            if first and writes != self._writes:
                return  # a write may have missed this first look: look again
            if first:
                self._written[model] = keys if len(keys) <= KNOWN_KEYS else None
            elif keys:
                self.invalidate(model, keys)
            marks.append((now, latest))
            self._synced[model] = now

    def _due(self, model: str) -> bool:
        synced = self._synced.get(model)
        return synced is None or time.monotonic() - synced >= self.sync_s

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
    rows: Rows

    @property
    def weight(self) -> int:
        """What the entry counts against the capacity (a key with no rows counts one)."""
        return max(1, len(self.rows))
