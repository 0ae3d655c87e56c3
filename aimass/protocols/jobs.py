"""Wire types of /v1/jobs (an AI Mass extension): every durable job of the caller's key, of any
kind (batches today), with its progress and events. ``aimass jobs`` reads these."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

MAX_LIST_LIMIT = 100


class Job(BaseModel):
    id: str
    object: Literal["job"] = "job"
    kind: str
    status: str
    owner: str
    created_at: int
    timestamps: dict[str, int] = Field(default_factory=dict)
    """Unix seconds at which the job first entered each status it went through."""
    progress: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] = Field(default_factory=dict)
    error: dict[str, Any] | None = None
    attempts: int = 0
    """Times the job was started (resumes after a crash and retries included)."""


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Job]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class JobEvent(BaseModel):
    object: Literal["job.event"] = "job.event"
    seq: int
    level: str
    message: str
    data: dict[str, Any] = Field(default_factory=dict)
    created_at: int


class JobEventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobEvent]
    has_more: bool = False
