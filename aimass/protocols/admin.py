"""Wire types of the admin API: registered models (``/v1/admin/models``), API keys
(``/v1/keys``) and usage (``/v1/usage``).

Answers are lists in OpenAI's ``{"object": "list", "data": [...]}`` envelope, as ``/v1/models``
is. A model's ``spec`` is the model spec as JSON (``docs/models.md`` lists its fields); its
schema is the request body of ``POST /v1/admin/models``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class RegisteredModel(BaseModel):
    """One registered version: what the registry wants (``desired``) and records (``state``,
    ``last_error``); when the version is deployed, what the engine observes."""

    name: str
    version: int
    desired: str
    """``loaded`` or ``unloaded``."""
    state: str
    last_error: str | None
    notes: dict[str, Any]
    spec: dict[str, Any]
    restarts: int | None = None
    """Replica restarts so far (deployed versions only)."""
    replicas: int | None = None
    """Replicas alive now (deployed versions only)."""
    queue_depth: int | None = None
    """Requests waiting for a replica now (deployed versions only)."""
    weight: int | None = None
    """This version's share of the requests that name no version, in percent, when the model
    has a serving route (0: not in the route); absent when it has none."""


class RegisteredModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[RegisteredModel]


class RemovedModel(BaseModel):
    """``DELETE /v1/admin/models/{name}``: the versions that were forgotten."""

    name: str
    removed_versions: list[int]


class RouteUpdate(BaseModel):
    """Body of ``PUT /v1/admin/models/{name}/route``: version (as text) to weight in percent,
    e.g. ``{"weights": {"3": 90, "4": 10}}``; the weights sum to 100."""

    model_config = ConfigDict(extra="forbid", strict=True)

    weights: dict[str, int]


class Promotion(BaseModel):
    """Body of ``POST /v1/admin/models/{name}/promote``: the version to serve every request."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: int = Field(ge=1, le=2**31 - 1)


class ModelRoute(BaseModel):
    """A serving route: which versions serve requests that name no version, and how much."""

    name: str
    weights: dict[str, int]
    """Version (as text) to weight in percent; they sum to 100."""
    created_at: str
    """ISO 8601, UTC (``2026-01-31T12:00:00Z``), as keys' times."""
    rolled_back_at: str | None = None
    """When a rollback took this route out of force (history entries only)."""


class ModelRouting(BaseModel):
    """``GET /v1/admin/models/{name}/route``: the route in force (null: the newest ready
    version serves) and every route the model has had, newest first."""

    name: str
    route: ModelRoute | None
    history: list[ModelRoute]


LIMIT_MAX = 2**31 - 1
"""Largest rate or budget a key may have (the registry keeps them as 32-bit integers)."""


class KeyCreate(BaseModel):
    """Body of ``POST /v1/keys``; same meaning as the ``aimass keys create`` flags."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    models: list[str] | None = None
    """Model names the key may use; null or absent: all."""
    admin: bool = False
    rpm: int | None = Field(default=None, gt=0, le=LIMIT_MAX)
    tpm: int | None = Field(default=None, gt=0, le=LIMIT_MAX)
    budget_tokens: int | None = Field(default=None, gt=0, le=LIMIT_MAX)
    budget_period: Literal["day", "month"] | None = None
    """Required with ``budget_tokens``."""
    expires: str | None = None
    """Lifetime such as ``30d``; absent: never expires."""


class Key(BaseModel):
    """An API key as people and APIs may see it: everything but the secret and its digest."""

    name: str
    id: str
    """The public part of the key, by which it is looked up."""
    models: Literal["all"] | list[str]
    admin: bool
    rpm: int | None
    tpm: int | None
    budget_tokens: int | None
    budget_period: str | None
    created_at: str | None
    expires_at: str | None
    revoked_at: str | None
    state: Literal["active", "expired", "revoked"]


class NewKey(Key):
    """A created or rotated key: the only answer that carries the key itself."""

    key: str


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Key]


class UsageRow(BaseModel):
    """Requests, tokens and errors of one key on one model on one UTC day."""

    key: str
    model: str
    date: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    errors: int


class UsageList(BaseModel):
    object: Literal["list"] = "list"
    data: list[UsageRow]
