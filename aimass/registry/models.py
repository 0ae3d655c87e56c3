"""Registered models: every version's spec and whether it should be loaded.

The desired state (``loaded``/``unloaded``) is what survives a restart: a starting server
loads every version marked ``loaded``. The observed state and last error are written back by
the server so that the CLI and other servers can see them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select

from aimass.errors import Conflict, InvalidInput, NotFound
from aimass.registry.db import session_scope
from aimass.registry.tables import LOADED, UNLOADED, ModelRouteRow, ModelRow
from aimass.spec import ModelSpec


@dataclass
class ModelEntry:
    """A registered version as callers see it (detached from the session)."""

    spec: ModelSpec
    desired: str
    state: str
    last_error: str | None
    notes: dict[str, Any] = field(default_factory=dict)
    updated_at: datetime | None = None
    created_at: datetime | None = None
    """When the version was registered (naive UTC, as every column)."""

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "version": self.spec.version,
            "desired": self.desired,
            "state": self.state,
            "last_error": self.last_error,
            "notes": self.notes,
            "spec": self.spec.model_dump(mode="json"),
        }


def _entry(row: ModelRow) -> ModelEntry:
    return ModelEntry(
        spec=ModelSpec.model_validate_json(row.spec_json),
        desired=row.desired,
        state=row.state,
        last_error=row.last_error,
        notes=json.loads(row.notes_json or "{}"),
        updated_at=row.updated_at,
        created_at=row.created_at,
    )


def add_model(
    url: str,
    spec: ModelSpec,
    *,
    load: bool = False,
    replace: bool = False,
    notes: dict[str, Any] | None = None,
) -> ModelEntry:
    """Register a version; an existing (name, version) is a Conflict unless ``replace``."""
    with session_scope(url) as s:
        row = s.scalar(select(ModelRow).filter_by(name=spec.name, version=spec.version))
        if row is not None and not replace:
            raise Conflict(f"model {spec.name!r} version {spec.version} is already registered")
        if row is None:
            row = ModelRow(name=spec.name, version=spec.version)
            s.add(row)
        row.spec_json = spec.model_dump_json()
        row.desired = LOADED if load else (row.desired or UNLOADED)
        row.notes_json = json.dumps(notes or {})
        s.flush()
        return _entry(row)


def list_models(url: str, name: str | None = None) -> list[ModelEntry]:
    with session_scope(url) as s:
        query = select(ModelRow).order_by(ModelRow.name, ModelRow.version)
        if name is not None:
            query = query.filter_by(name=name)
        return [_entry(r) for r in s.scalars(query)]


def get_model(url: str, name: str, version: int | None = None) -> ModelEntry:
    """One version, or the newest one when ``version`` is None."""
    entries = list_models(url, name)
    if not entries:
        raise NotFound(f"model {name!r} is not registered")
    if version is None:
        return entries[-1]
    for entry in entries:
        if entry.spec.version == version:
            return entry
    raise NotFound(f"model {name!r} has no version {version}")


def next_version(url: str, name: str) -> int:
    entries = list_models(url, name)
    return entries[-1].spec.version + 1 if entries else 1


def set_desired(url: str, name: str, version: int | None, desired: str) -> list[int]:
    """Mark versions to load or unload; returns the versions changed.

    Loading without a version loads the newest; unloading without one unloads them all.
    """
    if desired not in (LOADED, UNLOADED):
        raise InvalidInput(f"desired state must be {LOADED!r} or {UNLOADED!r}")
    if version is None and desired == LOADED:
        version = get_model(url, name).spec.version
    with session_scope(url) as s:
        query = select(ModelRow).filter_by(name=name)
        if version is not None:
            query = query.filter_by(version=version)
        rows = list(s.scalars(query))
        if not rows:
            get_model(url, name, version)
        for row in rows:
            row.desired = desired
        return [r.version for r in rows]


def set_state(url: str, name: str, version: int, state: str, last_error: str | None) -> None:
    with session_scope(url) as s:
        row = s.scalar(select(ModelRow).filter_by(name=name, version=version))
        if row is not None and (row.state, row.last_error) != (state, last_error):
            row.state = state
            row.last_error = last_error


def remove_model(url: str, name: str, version: int | None = None) -> list[int]:
    with session_scope(url) as s:
        query = select(ModelRow).filter_by(name=name)
        if version is not None:
            query = query.filter_by(version=version)
        rows = list(s.scalars(query))
        if not rows:
            raise NotFound(
                f"model {name!r}"
                + (f" version {version}" if version else "")
                + " is not registered"
            )
        for row in rows:
            s.delete(row)
        s.flush()
        if s.scalar(select(ModelRow.id).filter_by(name=name).limit(1)) is None:
            # the name is gone: registered again later, it starts without a route
            for route in s.scalars(select(ModelRouteRow).filter_by(name=name)):
                s.delete(route)
        return [r.version for r in rows]
