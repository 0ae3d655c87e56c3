"""What the scenario services (recommendations, forecasts) share: one JSON row per request,
the task check, and when a version was registered (state stored later is new to it)."""

from __future__ import annotations

import asyncio
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
