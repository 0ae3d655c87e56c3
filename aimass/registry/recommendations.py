"""Recommendation events kept between calls (``RecommendationEventRow``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select

from aimass.registry.db import session_scope
from aimass.registry.tables import RecommendationEventRow, utcnow
from aimass.registry.written import keys_written_after


@dataclass(frozen=True)
class Event:
    user: str
    item: str
    weight: float
    at: datetime
    created_at: datetime


def add_events(url: str, model: str, events: list[tuple[str, str, float, datetime | None]]) -> int:
    """Store (user, item, weight, when) interactions of ``model``; returns how many."""
    now = utcnow()
    with session_scope(url) as s:
        for user, item, weight, at in events:
            s.add(RecommendationEventRow(model=model, user=user, item=item, weight=weight,
                                         at=at or now, created_at=now))  # fmt: skip
    return len(events)


def user_events(url: str, model: str, user: str, since: datetime | None, limit: int) -> list[Event]:
    """The latest ``limit`` events of ``user`` on ``model`` stored after ``since``."""
    with session_scope(url) as s:
        query = select(RecommendationEventRow).filter_by(model=model, user=user)
        if since is not None:
            query = query.where(RecommendationEventRow.created_at > since)
        found = s.scalars(query.order_by(RecommendationEventRow.id.desc()).limit(limit))
        return [Event(r.user, r.item, r.weight, r.at, r.created_at) for r in found][::-1]


def users_written_after(url: str, model: str, after: int | None) -> tuple[set[str], int]:
    """The users of ``model`` with events stored after event id ``after`` (None: every user
    with events), and the latest event id."""
    return keys_written_after(url, RecommendationEventRow.user, model, after)


def all_events(url: str, model: str) -> list[Event]:
    """Every stored event of ``model``, oldest first (the next training job reads them)."""
    with session_scope(url) as s:
        query = select(RecommendationEventRow).filter_by(model=model)
        found = s.scalars(query.order_by(RecommendationEventRow.id))
        return [Event(r.user, r.item, r.weight, r.at, r.created_at) for r in found]
