"""Wire types of /v1/batches, OpenAI's Batch API.

A batch runs the requests of an uploaded JSONL file (purpose ``batch``; one request a line:
``{"custom_id", "method": "POST", "url", "body"}``) against one endpoint, and writes the answers
to an output file and the failures to an error file (purpose ``batch_output``), in input order.
Besides OpenAI's endpoints, AI Mass takes ``/v1/rerank`` and the Open Inference Protocol's
``/v2/models/{name}/infer``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aimass.protocols.vector_stores import check_metadata

MAX_LIST_LIMIT = 100
BatchStatus = Literal["validating", "failed", "in_progress", "finalizing", "completed", "expired",
                      "cancelling", "cancelled"]  # fmt: skip


class OutputExpiresAfter(BaseModel):
    anchor: Literal["created_at"]
    seconds: int = Field(ge=3600, le=30 * 24 * 3600)


class BatchCreate(BaseModel):
    """The body of ``POST /v1/batches``."""

    model_config = ConfigDict(extra="forbid")

    input_file_id: str = Field(min_length=1, max_length=64)
    endpoint: str = Field(min_length=1, max_length=300)
    completion_window: Literal["24h"]
    metadata: dict[str, str] | None = None
    output_expires_after: OutputExpiresAfter | None = None

    _metadata = field_validator("metadata")(check_metadata)


class BatchError(BaseModel):
    code: str | None = None
    line: int | None = None
    """The input file's line (from 1) the error is about."""
    message: str | None = None
    param: str | None = None


class BatchErrors(BaseModel):
    object: Literal["list"] = "list"
    data: list[BatchError] = Field(default_factory=list)


class RequestCounts(BaseModel):
    completed: int = 0
    failed: int = 0
    total: int = 0


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class BatchUsage(BaseModel):
    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0


class Batch(BaseModel):
    """One batch, as OpenAI describes it (timestamps in Unix seconds)."""

    id: str
    object: Literal["batch"] = "batch"
    endpoint: str
    errors: BatchErrors | None = None
    input_file_id: str
    completion_window: str
    status: BatchStatus
    output_file_id: str | None = None
    error_file_id: str | None = None
    created_at: int
    in_progress_at: int | None = None
    expires_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    request_counts: RequestCounts = Field(default_factory=RequestCounts)
    usage: BatchUsage = Field(default_factory=BatchUsage)
    model: str | None = None
    metadata: dict[str, str] | None = None


class BatchList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Batch]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class BatchOutputLine(BaseModel):
    """One line of an output or error file (documents the files' shape)."""

    id: str
    custom_id: str
    response: dict[str, Any] | None = None
    """``{"status_code", "request_id", "body"}``: the endpoint's answer, or its error body."""
    error: dict[str, Any] | None = None
    """``{"code", "message"}`` of a request that got no answer (batch expired or cancelled)."""
