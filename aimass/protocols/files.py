"""Wire types of /v1/files, OpenAI's Files API.

Uploads are ``multipart/form-data`` (a ``file`` part and a ``purpose`` field, optionally
``expires_after[anchor]`` and ``expires_after[seconds]``); the answers below are JSON.
``purpose`` takes OpenAI's upload purposes; ``batch_output`` and ``fine-tune-results`` are
purposes of files the server writes itself (batch results, training reports).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data")
"""What a client may upload a file for."""
SERVER_PURPOSES = ("batch_output", "fine-tune-results")
"""What the server writes files for (batch results, fine-tuning results)."""
Purpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "batch_output",
                  "fine-tune-results"]  # fmt: skip

MIN_EXPIRES_S = 3600
MAX_EXPIRES_S = 30 * 24 * 3600
"""OpenAI's bounds of ``expires_after.seconds`` (one hour to thirty days)."""
MAX_LIST_LIMIT = 10_000


class FileObject(BaseModel):
    """One file, as OpenAI describes it."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    """Unix seconds."""
    expires_at: int | None = None
    filename: str
    purpose: Purpose
    status: Literal["uploaded", "processed", "error"] = "processed"
    """Deprecated by OpenAI; always ``processed`` here (a file is stored whole or not at all)."""
    status_details: str | None = None


class FileList(BaseModel):
    """A page of files: ``has_more`` says whether ``after=last_id`` would find more."""

    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class FileListQuery(BaseModel):
    """Query parameters of ``GET /v1/files``."""

    purpose: str | None = None
    after: str | None = None
    limit: int = Field(default=MAX_LIST_LIMIT, ge=1, le=MAX_LIST_LIMIT)
    order: Literal["asc", "desc"] = "desc"


class FileUploadForm(BaseModel):
    """The fields of an upload besides the file (documents the multipart body)."""

    purpose: Literal["assistants", "batch", "fine-tune", "vision", "user_data"]
    expires_after_anchor: Literal["created_at"] | None = Field(
        default=None, alias="expires_after[anchor]"
    )
    expires_after_seconds: int | None = Field(
        default=None, alias="expires_after[seconds]", ge=MIN_EXPIRES_S, le=MAX_EXPIRES_S
    )
