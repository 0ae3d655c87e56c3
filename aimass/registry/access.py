"""Tables for API keys, usage counters and the audit log.

Keys are stored as a SHA-256 digest plus a short public id (the id is part of the key, so a
lookup never needs the secret). Usage is one row per (key, model, UTC day), incremented in
place by the server's batched flusher. The audit log is append-only.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from aimass.registry.db import Base, utcnow

ANONYMOUS_KEY_ID = 0
"""``key_id`` of usage rows for requests made without a key (auth off)."""

ANONYMOUS_NAME = "(anonymous)"
"""Display name of those rows; not a valid key name, so it cannot clash with one."""


class ApiKey(Base):
    """One API key: who it is, what it may use, how fast, and whether it still works."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    secret_hash: Mapped[str] = mapped_column(String(64))
    """Hex SHA-256 of the whole key; the key itself is never stored."""
    models: Mapped[str] = mapped_column(Text, default="*")
    """Comma-separated model names the key may use, or ``*`` for all."""
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget_tokens: Mapped[int | None] = mapped_column(Integer, nullable=True)
    budget_period: Mapped[str | None] = mapped_column(String(8), nullable=True)
    """``day`` or ``month`` (UTC calendar periods)."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class UsageDay(Base):
    """Counters of one key on one model for one UTC day."""

    __tablename__ = "usage_days"
    __table_args__ = (UniqueConstraint("key_id", "model", "day", name="uq_usage_key_model_day"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key_id: Mapped[int] = mapped_column(Integer, index=True)
    key_name: Mapped[str] = mapped_column(String(128))
    model: Mapped[str] = mapped_column(String(128))
    day: Mapped[str] = mapped_column(String(10), index=True)
    """ISO date (``YYYY-MM-DD``, UTC); sorts and compares as text."""
    requests: Mapped[int] = mapped_column(Integer, default=0)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)


class AuditEntry(Base):
    """One administrative action: who did what to which target, from where, and the outcome."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(160))
    action: Mapped[str] = mapped_column(String(80))
    target: Mapped[str] = mapped_column(String(255), default="")
    source: Mapped[str] = mapped_column(String(255), default="")
    result: Mapped[str] = mapped_column(Text, default="ok")
