"""Which keys of a model (a user of its events, a series of its observations) got rows stored
after a given row id: what a server's caches of that state ask to stay coherent with writes
made through other servers (``serving.scenarios.StateCache``)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute

from aimass.registry.db import session_scope


def keys_written_after(
    url: str, key: InstrumentedAttribute, model: str, after: int | None
) -> tuple[set[str], int]:
    """The values of ``key`` (a column of a table with ``id`` and ``model`` columns) in rows
    of ``model`` stored after row id ``after`` (None: in every row), and the table's latest
    row id (the next call's ``after``)."""
    table = key.class_
    with session_scope(url) as s:
        latest = s.scalar(select(func.max(table.id))) or 0
        if after is not None and latest <= after:
            return set(), latest
        query = select(key).where(table.model == model, table.id <= latest)
        if after is not None:
            query = query.where(table.id > after)
        return set(s.scalars(query.distinct())), latest
