"""Wire types of /v1/recommendations (an AI Mass extension) and of training recommenders."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from aimass.protocols.scenarios import TrainingCreate

MAX_N = 1000
MAX_EVENTS = 1000
ID = Field(min_length=1, max_length=256)


class RecommenderCreate(TrainingCreate):
    items_file: str | None = Field(default=None, min_length=1, max_length=64)
    """Item metadata (``item`` plus attribute columns) that request filters match."""


class RecommendationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1, max_length=200)
    user: str = ID
    n: int = Field(default=10, ge=1, le=MAX_N)
    exclude_seen: bool = True
    filter: dict[str, str | list[str]] = Field(default_factory=dict, max_length=16)
    """Item attribute → value (or any of values); only matching items are recommended."""


class ScoredItem(BaseModel):
    item: str
    score: float


class RecommendationResponse(BaseModel):
    object: Literal["recommendation.list"] = "recommendation.list"
    model: str
    user: str
    data: list[ScoredItem]
    fallback: Literal["popularity"] | None = None
    """Set when the user is unknown to the model (no training data, no events)."""
    events_folded_in: int = 0
    """Events stored since the serving version was trained that shaped this answer."""


class SimilarRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1, max_length=200)
    item: str = ID
    n: int = Field(default=10, ge=1, le=MAX_N)


class SimilarResponse(BaseModel):
    object: Literal["recommendation.similar"] = "recommendation.similar"
    model: str
    item: str
    data: list[ScoredItem]


class Interaction(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    user: str = ID
    item: str = ID
    weight: float = Field(default=1.0, gt=0, le=1e6)
    timestamp: float | None = Field(default=None, ge=0, le=4e9)
    """When it happened (Unix seconds); default: when it is received."""


class EventsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: str = Field(min_length=1, max_length=200)
    events: list[Interaction] = Field(min_length=1)
    """At most ``MAX_EVENTS`` (a 413 naming the limit above it)."""


class EventsResponse(BaseModel):
    object: Literal["recommendation.events"] = "recommendation.events"
    model: str
    stored: int
