"""Forecast observations kept between calls (``ForecastObservationRow``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from aimass.registry.db import session_scope
from aimass.registry.tables import ForecastObservationRow, utcnow
from aimass.registry.written import keys_written_after


def add_observations(url: str, model: str, points: list[tuple[str, float, float]]) -> int:
    """Store (series_id, time in epoch seconds, value) points of ``model``; returns how many."""
    now = utcnow()
    with session_scope(url) as s:
        for sid, at, value in points:
            s.add(ForecastObservationRow(model=model, series_id=sid, at=at, value=value,
                                         created_at=now))  # fmt: skip
    return len(points)


def observations(
    url: str, model: str, series_id: str, since: datetime | None, limit: int
) -> list[tuple[float, float]]:
    """The (time, value) points of a series stored after ``since``, oldest first (the latest
    ``limit``); a time sent twice keeps its last value."""
    with session_scope(url) as s:
        query = select(ForecastObservationRow).filter_by(model=model, series_id=series_id)
        if since is not None:
            query = query.where(ForecastObservationRow.created_at > since)
        found = list(s.scalars(query.order_by(ForecastObservationRow.id.desc()).limit(limit)))
        return [(r.at, r.value) for r in reversed(found)]


def series_written_after(url: str, model: str, after: int | None) -> tuple[set[str], int]:
    """The series of ``model`` with observations stored after row id ``after`` (None: every
    series with observations), and the latest row id."""
    return keys_written_after(url, ForecastObservationRow.series_id, model, after)
