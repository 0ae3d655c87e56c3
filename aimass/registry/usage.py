"""Usage accounting: counters per (key, model, UTC day), aggregated in memory, written in batches.

The server adds to a ``UsageBuffer`` on the request path (a dict update under a lock); a
background task hands the buffer's contents to ``write_usage`` every
``usage_flush_interval_s``, and once more at shutdown. Rows are incremented in place
(``UPDATE ... SET n = n + :d``), so several servers can share one database.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from aimass.registry.db import session_scope
from aimass.registry.tables import UsageDay

UsageKey = tuple[int, str, str, str]
"""(key_id, key_name, model, day)."""


@dataclass
class Counts:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.errors += other.errors

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def today() -> str:
    return datetime.now(UTC).date().isoformat()


def period_bounds(period: str, now: datetime | None = None) -> tuple[date, datetime]:
    """First day of the current UTC ``day``/``month`` and the moment the next one starts."""
    now = now or datetime.now(UTC)
    start = now.date() if period == "day" else now.date().replace(day=1)
    if period == "day":
        nxt = start + timedelta(days=1)
    else:
        nxt = (start.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start, datetime(nxt.year, nxt.month, nxt.day, tzinfo=UTC)


class UsageBuffer:
    """Counters not yet written; safe to use from the event loop and from worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[UsageKey, Counts] = {}

    def add(self, key: UsageKey, counts: Counts) -> None:
        with self._lock:
            cur = self._pending.get(key)
            if cur is None:
                self._pending[key] = counts
            else:
                cur.add(counts)

    def take(self) -> dict[UsageKey, Counts]:
        """Everything pending, leaving the buffer empty."""
        with self._lock:
            out, self._pending = self._pending, {}
            return out

    def put_back(self, batch: dict[UsageKey, Counts]) -> None:
        """Re-queue a batch whose write failed, so nothing is lost."""
        for key, counts in batch.items():
            self.add(key, counts)

    def tokens_by_key(self) -> dict[int, int]:
        with self._lock:
            out: dict[int, int] = {}
            for (key_id, *_), c in self._pending.items():
                out[key_id] = out.get(key_id, 0) + c.tokens
            return out


def write_usage(url: str, batch: dict[UsageKey, Counts]) -> None:
    """Add a batch of counters to the database in one transaction (retried once on a race)."""
    if not batch:
        return
    try:
        _write(url, batch)
    except IntegrityError:
        _write(url, batch)  # another server inserted the same row first: now it updates


def _write(url: str, batch: dict[UsageKey, Counts]) -> None:
    with session_scope(url) as s:
        for (key_id, key_name, model, day), c in batch.items():
            where = (UsageDay.key_id == key_id, UsageDay.model == model, UsageDay.day == day)
            res = s.execute(
                update(UsageDay)
                .where(*where)
                .values(
                    requests=UsageDay.requests + c.requests,
                    prompt_tokens=UsageDay.prompt_tokens + c.prompt_tokens,
                    completion_tokens=UsageDay.completion_tokens + c.completion_tokens,
                    errors=UsageDay.errors + c.errors,
                )
            )
            if res.rowcount == 0:
                s.add(
                    UsageDay(key_id=key_id, key_name=key_name, model=model, day=day, **c.__dict__)
                )
                s.flush()


def tokens_since(url: str, since: dict[int, str]) -> dict[int, int]:
    """Tokens used by each key from its period's first day on: ``{key_id: first_day}`` in."""
    if not since:
        return {}
    out: dict[int, int] = {}
    with session_scope(url) as s:
        for first_day in set(since.values()):
            ids = [k for k, d in since.items() if d == first_day]
            rows = s.execute(
                select(
                    UsageDay.key_id, func.sum(UsageDay.prompt_tokens + UsageDay.completion_tokens)
                )
                .where(UsageDay.key_id.in_(ids), UsageDay.day >= first_day)
                .group_by(UsageDay.key_id)
            )
            out.update({k: int(n or 0) for k, n in rows})
    return out


def query_usage(
    url: str,
    *,
    key_name: str | None = None,
    model: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> list[dict]:
    """Usage rows (newest day first), optionally filtered; days are inclusive ISO dates."""
    q = select(UsageDay).order_by(UsageDay.day.desc(), UsageDay.key_name, UsageDay.model)
    if key_name is not None:
        q = q.where(UsageDay.key_name == key_name)
    if model is not None:
        q = q.where(UsageDay.model == model)
    if since is not None:
        q = q.where(UsageDay.day >= since)
    if until is not None:
        q = q.where(UsageDay.day <= until)
    with session_scope(url) as s:
        return [_row(r) for r in s.scalars(q)]


def _row(r: UsageDay) -> dict:
    return {
        "key": r.key_name,
        "model": r.model,
        "date": r.day,
        "requests": r.requests,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "total_tokens": r.prompt_tokens + r.completion_tokens,
        "errors": r.errors,
    }
