"""Wire types shared by the scenario services: the body that starts a training job."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

FILE_ID = Field(min_length=1, max_length=64)
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""A model name, as ``aimass.spec.NAME_PATTERN`` (protocols do not import the spec)."""


class TrainingCreate(BaseModel):
    """``POST /v1/<family>/models``: train a new version of ``name`` from a Files API file."""

    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(pattern=NAME_PATTERN)
    training_file: str = FILE_ID
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    auto_promote: bool = True
    """Promote the new version if it beats the baseline and the serving version."""
