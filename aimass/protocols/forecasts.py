"""Wire types of /v1/forecasts (an AI Mass extension) and of training forecasters."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from aimass.protocols.scenarios import TrainingCreate

MAX_HORIZON = 1000
MAX_POINTS = 10_000
MAX_COLUMNS = 64
ID = Field(min_length=1, max_length=256)


class ForecasterCreate(TrainingCreate):
    """Train a forecaster from a long CSV (``series_id,timestamp,value[,exogenous...]``)."""


class Point(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    timestamp: float = Field(ge=0, le=4e9)
    """Unix seconds (UTC)."""
    value: float = Field(allow_inf_nan=False)


class ForecastRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1, max_length=200)
    series_id: str | None = Field(default=None, min_length=1, max_length=256)
    history: list[Point] | None = Field(default=None, min_length=2)
    """A series the model did not train on: it is fitted with the model's usual choice (at
    most ``MAX_POINTS`` points)."""
    horizon: int = Field(ge=1, le=MAX_HORIZON)
    level: list[int] = Field(default_factory=lambda: [80, 95], max_length=8)
    future: dict[str, list[float]] | None = None
    """The exogenous columns over the horizon, as columns of equal length:
    ``{"timestamp": [unix seconds...], "promotion": [0, 1, ...]}``. A model trained with
    exogenous columns (the gradient-boosting one) needs each at every forecast time (a 400
    naming the column otherwise); the statistical models do not read them."""

    @model_validator(mode="after")
    def _one_source(self) -> ForecastRequest:
        if (self.series_id is None) == (self.history is None):
            raise ValueError("give exactly one of series_id and history")
        if any(not 1 <= level <= 99 for level in self.level):
            raise ValueError("level: each must be from 1 to 99")
        if self.future is not None:
            _check_future(self.future)
        return self


def _check_future(future: dict[str, list[float]]) -> None:
    if "timestamp" not in future:
        raise ValueError("future: needs a timestamp column (Unix seconds of each row)")
    if len(future) > MAX_COLUMNS + 1:
        raise ValueError(f"future: at most {MAX_COLUMNS} columns besides timestamp")
    rows = len(future["timestamp"])
    for column, values in future.items():
        if not 1 <= len(column) <= 256:
            raise ValueError("future: column names must be 1 to 256 characters")
        if len(values) != rows or rows > MAX_HORIZON:
            raise ValueError(f"future: columns must have one equal length of at most "
                             f"{MAX_HORIZON} values ({column!r} has {len(values)})")  # fmt: skip
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"future: {column!r} has a value that is not a finite number")


class Interval(BaseModel):
    lo: list[float]
    hi: list[float]


class ForecastResponse(BaseModel):
    object: Literal["forecast"] = "forecast"
    model: str
    series_id: str | None = None
    timestamps: list[float]
    """Unix seconds of each forecast point."""
    mean: list[float]
    intervals: dict[str, Interval]
    """Level in percent → lower and upper bounds, point by point."""
    method: str
    """The model that made it: the statistical one chosen for the series by backtest, or
    ``LightGBM`` (the global gradient-boosting model)."""
    observations_used: int


class Observation(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    series_id: str = ID
    timestamp: float = Field(ge=0, le=4e9)
    value: float = Field(allow_inf_nan=False)


class ObservationsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1, max_length=200)
    observations: list[Observation] = Field(min_length=1)
    """At most ``MAX_POINTS`` (a 413 naming the limit above it)."""


class ObservationsResponse(BaseModel):
    object: Literal["forecast.observations"] = "forecast.observations"
    model: str
    stored: int
