"""Real-time features per entity (card, account, device...), one code path for training and
serving.

Training replays the transactions file in time order through ``FeatureState.observe``; the
server calls the very same method for each scored event, so a model never sees features
computed differently from those it was trained on (``tests/unit/test_risk_features.py`` checks
the equality, across a save and reload of the state).

For each entity column and each window (1 min, 1 h, 24 h): the count and amount sum of the
entity's earlier events in the window; the seconds since its last event; and how far this
amount is from the entity's usual amount (a z-score over its running mean and variance). The
features describe the history *before* the event, then the event joins the history.

An event older than its entity's last one is counted at the entity's last time (the clock of an
entity never goes back), so that replaying and serving agree whatever order events arrive in.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aimass.errors import InvalidInput

WINDOWS: tuple[tuple[str, float], ...] = (("1m", 60.0), ("1h", 3600.0), ("24h", 86400.0))
NEVER_S = 30 * 86400.0
"""Time since last event of an entity never seen before (a month: "long ago", finite)."""
MAX_ABS = 1e12
"""Largest magnitude of a number in an event (sums of larger ones would overflow to inf)."""
MAX_KEY_CHARS = 100
"""Longest entity value (a card number, an account id)."""
MAX_WINDOW_EVENTS = 5000
"""Events kept per entity and window: a runaway entity cannot grow the state without bound
(its counts saturate there)."""


@dataclass(frozen=True)
class FeatureConfig:
    """Which columns of an event are what; stored with the model version."""

    entities: tuple[str, ...]
    amount: str = "amount"
    time: str = "timestamp"
    numeric: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureConfig:
        return cls(
            entities=tuple(data["entities"]),
            amount=data.get("amount", "amount"),
            time=data.get("time", "timestamp"),
            numeric=tuple(data.get("numeric", ())),
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "entities": list(self.entities),
            "amount": self.amount,
            "time": self.time,
            "numeric": list(self.numeric),
        }

    @property
    def names(self) -> list[str]:
        """Feature names, in the model's column order."""
        names = ["amount", "log_amount", *self.numeric]
        for entity in self.entities:
            for label, _ in WINDOWS:
                names += [f"{entity}_count_{label}", f"{entity}_sum_{label}"]
            names += [f"{entity}_since_last_s", f"{entity}_amount_z"]
        return names


@dataclass
class EntityState:
    """One entity's history: per window the (time, amount) events in it with their sum, the
    last time seen, and the running mean and variance of its amounts (Welford)."""

    windows: list[deque] = field(default_factory=lambda: [deque() for _ in WINDOWS])
    sums: list[float] = field(default_factory=lambda: [0.0 for _ in WINDOWS])
    last_t: float | None = None
    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "w": [[list(e) for e in window] for window in self.windows],
            "last_t": self.last_t,
            "n": self.n,
            "mean": self.mean,
            "m2": self.m2,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EntityState:
        windows = [deque((float(t), float(a)) for t, a in w) for w in data["w"]]
        return cls(
            windows=windows,
            sums=[math.fsum(a for _, a in w) for w in windows],
            last_t=data["last_t"],
            n=int(data["n"]),
            mean=float(data["mean"]),
            m2=float(data["m2"]),
        )

    def features(self, t: float, amount: float) -> list[float]:
        """This entity's features for an event at ``t`` (history before it), expiring what
        fell out of each window."""
        out: list[float] = []
        for i, (_, span) in enumerate(WINDOWS):
            window = self.windows[i]
            while window and window[0][0] <= t - span:
                self.sums[i] -= window.popleft()[1]
            if not window:
                self.sums[i] = 0.0  # no drift from repeated float subtraction
            out += [float(len(window)), self.sums[i]]
        out.append(NEVER_S if self.last_t is None else t - self.last_t)
        std = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0
        out.append((amount - self.mean) / std if std > 0 else 0.0)
        return out

    def add(self, t: float, amount: float) -> None:
        for i, window in enumerate(self.windows):
            window.append((t, amount))
            self.sums[i] += amount
            if len(window) > MAX_WINDOW_EVENTS:
                self.sums[i] -= window.popleft()[1]
        self.last_t = t
        self.n += 1
        delta = amount - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (amount - self.mean)


def number(event: dict[str, Any], column: str, row: int | None = None) -> float:
    """``event[column]`` as a finite float; InvalidInput naming the column (and row)."""
    value = event.get(column)
    where = f"row {row}: " if row is not None else ""
    if value is None or value == "":
        raise InvalidInput(f"{where}column {column!r} is missing", param=column)
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInput(
            f"{where}column {column!r} must be a number, got {value!r}", param=column
        ) from None
    if not math.isfinite(x) or abs(x) > MAX_ABS:
        raise InvalidInput(
            f"{where}column {column!r} must be a finite number within ±{MAX_ABS:g}, got {value!r}",
            param=column,
        )
    return x


def entity_key(event: dict[str, Any], column: str, row: int | None = None) -> str:
    value = event.get(column)
    where = f"row {row}: " if row is not None else ""
    if value is None or value == "" or isinstance(value, dict | list):
        raise InvalidInput(f"{where}entity column {column!r} is missing", param=column)
    if len(str(value)) > MAX_KEY_CHARS:
        raise InvalidInput(
            f"{where}entity column {column!r} is over {MAX_KEY_CHARS} characters", param=column
        )
    return f"{column}:{value}"


class FeatureState:
    """Every entity's state for one model; ``observe`` is the one feature function."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self.entities: dict[str, EntityState] = {}

    def check(self, event: dict[str, Any], row: int | None = None) -> tuple[float, float, list]:
        """The event's time, amount and entity keys, validated (nothing is changed)."""
        c = self.config
        t, amount = number(event, c.time, row), number(event, c.amount, row)
        keys = [entity_key(event, e, row) for e in c.entities]
        for column in c.numeric:
            number(event, column, row)
        return t, amount, keys

    def observe(self, event: dict[str, Any], row: int | None = None) -> list[str]:
        """Compute ``event``'s features into ``self.last`` and add it to its entities'
        history; returns the entity keys it changed (to persist)."""
        t, amount, keys = self.check(event, row)
        values = [amount, math.log1p(max(amount, 0.0))]
        values += [number(event, column, row) for column in self.config.numeric]
        for key in keys:
            state = self.entities.get(key)
            if state is None:
                state = self.entities[key] = EntityState()
            at = t if state.last_t is None else max(t, state.last_t)
            values += state.features(at, amount)
            state.add(at, amount)
        self.last = values
        return keys

    def vector(self, event: dict[str, Any], row: int | None = None) -> np.ndarray:
        """``observe`` and return the features as a float32 row."""
        self.observe(event, row)
        return np.asarray(self.last, dtype=np.float32)

    def dump(self, key: str) -> dict[str, Any]:
        return self.entities[key].as_dict()

    def load(self, key: str, data: dict[str, Any]) -> None:
        self.entities[key] = EntityState.from_dict(data)

    def dump_all(self) -> dict[str, dict[str, Any]]:
        return {key: state.as_dict() for key, state in self.entities.items()}


def replay(
    config: FeatureConfig, events: list[dict[str, Any]]
) -> tuple[np.ndarray, list[int], FeatureState]:
    """Features of ``events`` replayed in time order (stable: ties keep file order), as a matrix
    in the file's row order, the order used, and the state at the end (the history a served
    model starts from). Errors name the file row (1-based, after the header)."""
    state = FeatureState(config)
    times = [number(e, config.time, i + 1) for i, e in enumerate(events)]
    order = sorted(range(len(events)), key=times.__getitem__)
    matrix = np.zeros((len(events), len(config.names)), dtype=np.float32)
    for i in order:
        matrix[i] = state.vector(events[i], i + 1)
    return matrix, order, state
