"""Interactions (user, item, optional weight and timestamp) and item metadata files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aimass.scenarios.csvfile import TrainingFileError, number, rows, timestamp

MAX_ID_CHARS = 256


@dataclass
class Interactions:
    """Interactions in file order: ``users[i]`` touched ``items[i]`` with ``weights[i]`` at
    ``times[i]`` (seconds; the line number when the file has no timestamps)."""

    users: list[str]
    items: list[str]
    weights: np.ndarray
    times: np.ndarray
    timed: bool = True

    def __len__(self) -> int:
        return len(self.users)

    def subset(self, mask: np.ndarray) -> Interactions:
        keep = np.flatnonzero(mask)
        return Interactions(
            [self.users[i] for i in keep],
            [self.items[i] for i in keep],
            self.weights[keep],
            self.times[keep],
            self.timed,
        )

    def extended(self, other: Interactions) -> Interactions:
        return Interactions(
            self.users + other.users,
            self.items + other.items,
            np.concatenate([self.weights, other.weights]),
            np.concatenate([self.times, other.times]),
            self.timed and other.timed,
        )


@dataclass
class ItemMetadata:
    """Attributes of items (item → attribute → text), used by request filters."""

    attributes: dict[str, dict[str, str]] = field(default_factory=dict)


def _identifier(text: str, line: int, column: str) -> str:
    if not text:
        raise TrainingFileError("is empty", line, column)
    if len(text) > MAX_ID_CHARS:
        raise TrainingFileError(f"is longer than {MAX_ID_CHARS} characters", line, column)
    return text


def read_interactions(path: Path) -> Interactions:
    """The interactions of a CSV with columns ``user``, ``item`` and optionally ``weight``
    (a positive number, default 1) and ``timestamp`` (ISO 8601 or epoch seconds)."""
    users: list[str] = []
    items: list[str] = []
    weights: list[float] = []
    times: list[float] = []
    timed = None
    for line, row in rows(path, ("user", "item")):
        users.append(_identifier(row["user"], line, "user"))
        items.append(_identifier(row["item"], line, "item"))
        weight = number(row["weight"], line, "weight") if row.get("weight") else 1.0
        if weight <= 0:
            raise TrainingFileError(f"{row['weight']!r} must be > 0", line, "weight")
        weights.append(weight)
        if timed is None:
            timed = "timestamp" in row
        times.append(timestamp(row["timestamp"], line, "timestamp") if timed else float(line))
    if not users:
        raise TrainingFileError("the file has no interactions (only a header)", 2)
    return Interactions(
        users, items, np.asarray(weights, np.float32), np.asarray(times), bool(timed)
    )


def read_items(path: Path) -> ItemMetadata:
    """Item metadata: a CSV with an ``item`` column and any attribute columns."""
    attributes: dict[str, dict[str, str]] = {}
    for line, row in rows(path, ("item",)):
        item = _identifier(row.pop("item"), line, "item")
        attributes[item] = row
    return ItemMetadata(attributes)
