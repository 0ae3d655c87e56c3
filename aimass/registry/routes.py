"""Serving routes: which versions of a model serve requests that name no version, and how much.

A route maps versions to integer weights in percent that sum to 100 (``{3: 90, 4: 10}`` is a
10 % canary of version 4). Routes are kept as history (``ModelRouteRow``): setting one appends
a row, and a rollback marks the current row rolled back so that the one before it serves
again. A model name with no route serves its newest ready version, as before routes existed.

Setting a route marks every version with a positive weight ``loaded``, so a server (this one or
another on the same database) loads it at its next reconcile; the control plane reads the
routes on the same poll (``current_routes``) and hands them to the engine.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from aimass.errors import Conflict, InvalidInput, NotFound
from aimass.refs import parse_version
from aimass.registry.db import session_scope
from aimass.registry.tables import LOADED, ModelRouteRow, ModelRow, utcnow
from aimass.spec import ModelSpec

TOTAL = 100
"""What the weights of a route add up to: they are percentages."""


@dataclass(frozen=True)
class Route:
    """One route of the history, detached from the session."""

    id: int
    name: str
    weights: dict[int, int]
    """Version to weight in percent, versions ascending."""
    created_at: datetime
    rolled_back_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weights": {str(v): w for v, w in self.weights.items()},
            "created_at": _iso(self.created_at),
            "rolled_back_at": _iso(self.rolled_back_at),
        }

    def describe(self) -> str:
        """``3:90,4:10``, the form ``aimass models route --weights`` takes."""
        return ",".join(f"{v}:{w}" for v, w in self.weights.items())


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value else None


def _route(row: ModelRouteRow) -> Route:
    weights = {int(v): w for v, w in json.loads(row.weights_json).items()}
    return Route(
        row.id, row.name, dict(sorted(weights.items())), row.created_at, row.rolled_back_at
    )


def parse_weights(text: str) -> dict[int, int]:
    """``"3:90,4:10"`` as ``{3: 90, 4: 10}``; not yet checked against the sum or the registry."""
    weights: dict[int, int] = {}
    for item in text.split(","):
        version, sep, weight = item.strip().partition(":")
        if not sep or not weight.strip().isascii() or not weight.strip().isdigit():
            raise InvalidInput(
                f"weights must be VERSION:PERCENT pairs separated by commas, got {item!r}",
                param="weights",
            )
        key = _version(version.strip())
        if key in weights:
            raise InvalidInput(f"weights name version {key} twice", param="weights")
        weights[key] = int(weight)
    return weights


def _version(value: Any) -> int:
    try:
        version = parse_version(value, "a version in weights")
    except InvalidInput as exc:
        raise InvalidInput(exc.message, param="weights") from None
    if version is None:
        raise InvalidInput("weights: a version is missing", param="weights")
    return version


def check_weights(weights: dict[Any, Any]) -> dict[int, int]:
    """Weights as a route holds them: versions are positive integers, weights integers from 0
    to 100 that sum to 100. Every failure is an ``InvalidInput`` naming ``weights``."""
    if not isinstance(weights, dict) or not weights:
        raise InvalidInput("weights must name at least one version", param="weights")
    checked: dict[int, int] = {}
    for version, weight in weights.items():
        key = _version(version)
        if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= TOTAL:
            raise InvalidInput(
                f"weights: the weight of version {key} must be an integer from 0 to {TOTAL}, "
                f"got {weight!r}",
                param="weights",
            )
        if key in checked:
            raise InvalidInput(f"weights name version {key} twice", param="weights")
        checked[key] = weight
    total = sum(checked.values())
    if total != TOTAL:
        raise InvalidInput(f"weights must sum to {TOTAL} (percent), got {total}", param="weights")
    return dict(sorted(checked.items()))


def routed_specs(url: str, name: str, weights: dict[Any, Any]) -> list[ModelSpec]:
    """The specs of the versions ``weights`` sends traffic to, once the weights are checked and
    every version they name is registered (else NotFound naming it); nothing is written."""
    checked = check_weights(weights)
    with session_scope(url) as s:
        rows = _registered(s, name, checked)
        return [ModelSpec.model_validate_json(rows[v].spec_json) for v, w in checked.items() if w]


def set_route(url: str, name: str, weights: dict[Any, Any]) -> Route:
    """Make ``weights`` the route of ``name``; every version named must be registered (else
    NotFound naming it). Versions with a positive weight are marked to be loaded."""
    checked = check_weights(weights)
    with session_scope(url) as s:
        rows = _registered(s, name, checked)
        for version, weight in checked.items():
            if weight > 0:
                rows[version].desired = LOADED
        row = ModelRouteRow(name=name, weights_json=json.dumps(checked), created_at=utcnow())
        s.add(row)
        s.flush()
        return _route(row)


def _registered(s: Session, name: str, weights: dict[int, int]) -> dict[int, ModelRow]:
    """``name``'s registered versions; NotFound when the model or a weighted version is not."""
    rows = {r.version: r for r in s.scalars(select(ModelRow).filter_by(name=name))}
    if not rows:
        raise NotFound(f"model {name!r} is not registered", param="model")
    missing = [v for v in weights if v not in rows]
    if missing:
        raise NotFound(
            f"model {name!r} has no version {', '.join(map(str, missing))}",
            param="weights",
        )
    return rows


def promote(url: str, name: str, version: int) -> Route:
    """Route all of ``name``'s traffic to ``version`` (loaded if it is not)."""
    return set_route(url, name, {version: TOTAL})


def rollback(url: str, name: str) -> Route:
    """Go back to the route before the current one; returns the route now in force.

    Conflict when there is nothing to go back to: no route, or only one left."""
    with session_scope(url) as s:
        live = list(
            s.scalars(
                select(ModelRouteRow)
                .filter_by(name=name, rolled_back_at=None)
                .order_by(ModelRouteRow.id.desc())
                .limit(2)
            )
        )
        if len(live) < 2:
            what = "has no route" if not live else "has no earlier route"
            raise Conflict(f"model {name!r} {what} to roll back to")
        live[0].rolled_back_at = utcnow()
        restored = _route(live[1])
        for row in s.scalars(select(ModelRow).filter_by(name=name)):
            if restored.weights.get(row.version, 0) > 0:
                row.desired = LOADED
        return restored


def current_route(url: str, name: str) -> Route | None:
    return current_routes(url, name).get(name)


def current_routes(url: str, name: str | None = None) -> dict[str, Route]:
    """The route in force of every model name that has one (or of ``name`` only)."""
    with session_scope(url) as s:
        query = select(ModelRouteRow).filter_by(rolled_back_at=None).order_by(ModelRouteRow.id)
        if name is not None:
            query = query.filter_by(name=name)
        return {row.name: _route(row) for row in s.scalars(query)}


def history(url: str, name: str) -> list[Route]:
    """Every route ``name`` has had, newest first, rolled back ones included."""
    with session_scope(url) as s:
        query = select(ModelRouteRow).filter_by(name=name).order_by(ModelRouteRow.id.desc())
        return [_route(row) for row in s.scalars(query)]
