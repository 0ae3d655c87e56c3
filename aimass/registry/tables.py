"""Every table the registry owns, in one module: models and their serving routes, API keys,
usage counters, audit log, files, vector stores, jobs and their events.

One module so that ``Base.metadata`` is complete as soon as it is imported: the migrations
(``registry/migrations``) and the test that compares them with this metadata see every table,
and a new table cannot be forgotten by an import list. This module imports nothing from the
rest of the registry, so the repositories (``models``, ``keys``, ``usage``, ``audit``) and
``db`` can all import it without a cycle.

A change here needs a migration (see docs/database.md); ``tests/unit/test_registry_migrations.py``
fails while the tables and the migrations disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

LOADED, UNLOADED = "loaded", "unloaded"
"""A model version's desired and observed states (``ModelRow.desired`` / ``.state``)."""


def utcnow() -> datetime:
    """Naive UTC now: every DateTime column holds naive UTC (SQLite has no time zones)."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    """Declarative base of every table the registry owns."""


class ModelRow(Base):
    """One registered model version: its spec, whether it should be loaded, and how it is."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    spec_json: Mapped[str] = mapped_column(Text)
    desired: Mapped[str] = mapped_column(String(16), default=UNLOADED)
    state: Mapped[str] = mapped_column(String(16), default=UNLOADED)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    notes_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class ApiKey(Base):
    """One API key: who it is, what it may use, how fast, and whether it still works.

    Stored as a SHA-256 digest plus a short public id (the id is part of the key, so a lookup
    never needs the secret).
    """

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
    """Counters of one key on one model for one UTC day, incremented in place."""

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
    """One administrative action: who did what to which target, from where, and the outcome.

    Append-only.
    """

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(160))
    action: Mapped[str] = mapped_column(String(80))
    target: Mapped[str] = mapped_column(String(255), default="")
    source: Mapped[str] = mapped_column(String(255), default="")
    result: Mapped[str] = mapped_column(Text, default="ok")


class FileRow(Base):
    """One uploaded file (OpenAI's Files API): its metadata; the bytes live in a ``FileStorage``.

    A row is written only after its bytes are durably stored under ``storage_key``, so every
    row names a whole file; a crash between the two leaves an orphan blob, never a row without
    one. ``owner_key_id`` is the API key that uploaded it (``None``: auth off, anonymous).
    """

    __tablename__ = "files"
    __table_args__ = (Index("ix_files_owner_created", "owner_key_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    """``file-`` and 24 random characters, as OpenAI's ids look."""
    owner_key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    owner: Mapped[str] = mapped_column(String(160))
    """The uploading key's name at upload time (``anonymous`` with auth off), for listings."""
    purpose: Mapped[str] = mapped_column(String(32), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str | None] = mapped_column(String(255), nullable=True)
    bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(255))
    """Where the storage keeps the bytes (a relative path for the local disk)."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class VectorStoreRow(Base):
    """One vector store (OpenAI's Vector Stores API): its owner, embedding model and chunking.

    The store's chunks and their vectors live in ``vector_store_chunks``, so its HNSW index
    (a file under ``AIMASS_HOME/stores``) can always be rebuilt from the database.
    """

    __tablename__ = "vector_stores"
    __table_args__ = (Index("ix_vector_stores_owner_created", "owner_key_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    """``vs_`` and 24 random characters, as OpenAI's ids look."""
    owner_key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The API key that created it (``None``: auth off, anonymous)."""
    name: Mapped[str] = mapped_column(String(255), default="")
    embedding_model: Mapped[str] = mapped_column(String(160))
    """The embedding model's reference (``name`` or ``name:version``) every chunk went through."""
    dimensions: Mapped[int] = mapped_column(Integer, default=0)
    """The vectors' width, fixed by the first embedded chunk (0 until then)."""
    image_model: Mapped[str | None] = mapped_column(String(160), nullable=True)
    """The image-embedding model of its image files (``None``: images are found by their text
    only)."""
    image_dimensions: Mapped[int] = mapped_column(Integer, default=0)
    """The image vectors' width, fixed by the first image (0 until then)."""
    metadata_json: Mapped[str] = mapped_column(Text, default="{}")
    expires_after_days: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """OpenAI's ``expires_after`` (anchor ``last_active_at``), in days; ``None``: never."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    last_active_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class VectorStoreFileRow(Base):
    """One file of a vector store: its attributes, chunking, and how its ingestion went.

    ``status`` is ``in_progress`` until the file's chunks are written, with ``completed``, in the
    same transaction; a server that stops mid-file finds it ``in_progress`` at the next start
    and ingests it again, so a ``completed`` file always has all of its chunks.
    """

    __tablename__ = "vector_store_files"
    __table_args__ = (UniqueConstraint("store_id", "file_id", name="uq_vector_store_file"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(40), index=True)
    file_id: Mapped[str] = mapped_column(String(40), index=True)
    batch_id: Mapped[str | None] = mapped_column(String(40), nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(16), default="in_progress", index=True)
    error_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    error_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    attributes_json: Mapped[str] = mapped_column(Text, default="{}")
    max_chunk_tokens: Mapped[int] = mapped_column(Integer)
    chunk_overlap_tokens: Mapped[int] = mapped_column(Integer)
    usage_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class VectorStoreChunkRow(Base):
    """One chunk of a vector store file: its text and its vector (float32 bytes).

    ``id`` is the chunk's key in the store's HNSW index; ids are never reused (AUTOINCREMENT on
    SQLite, a sequence on PostgreSQL), so a deleted chunk's key cannot come back as another one.
    """

    __tablename__ = "vector_store_chunks"
    __table_args__ = (
        Index("ix_vector_store_chunks_store_file", "store_id", "file_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    store_id: Mapped[str] = mapped_column(String(40))
    file_id: Mapped[str] = mapped_column(String(40))
    seq: Mapped[int] = mapped_column(Integer)
    """The chunk's position in its file."""
    text: Mapped[str] = mapped_column(Text)
    tokens: Mapped[int] = mapped_column(Integer)
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    image_vector: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    """An image file's vector by the store's image model (float32 bytes), on its first chunk:
    the key of that chunk in the store's image index."""


class VectorStoreBatchRow(Base):
    """One file batch of a vector store; its files carry its id (``vector_store_files``)."""

    __tablename__ = "vector_store_file_batches"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    store_id: Mapped[str] = mapped_column(String(40), index=True)
    cancelled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ModelRouteRow(Base):
    """One serving route of a model name: which versions serve requests that name no version,
    with integer weights in percent (``{"3": 90, "4": 10}``).

    Append-only history: the route in force is the newest row not rolled back, so a rollback
    marks the current row (``rolled_back_at``) and the one before it serves again. A name with
    no row serves its newest ready version, as before routes existed.
    """

    __tablename__ = "model_routes"
    __table_args__ = (Index("ix_model_routes_name_id", "name", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    weights_json: Mapped[str] = mapped_column(Text)
    """JSON object of version (as text) to weight in percent; the weights sum to 100."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    rolled_back_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)


class JobRow(Base):
    """One durable job (a batch, later a fine-tuning run): who asked, what, and how far it got.

    ``status`` is the kind's own word (a batch: ``validating`` ... ``completed``) and
    ``timestamps_json`` holds when each status was first entered. A runner holds the job while
    ``lease_until`` is in the future and renews it as it works; a job whose lease ran out (its
    server was killed) is claimed again and resumed from ``checkpoint_json``.
    """

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_owner_created", "owner_key_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    owner_key_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    """The API key that made the job (``None``: auth off, anonymous)."""
    owner: Mapped[str] = mapped_column(String(160))
    status: Mapped[str] = mapped_column(String(16), index=True)
    timestamps_json: Mapped[str] = mapped_column(Text, default="{}")
    params_json: Mapped[str] = mapped_column(Text, default="{}")
    progress_json: Mapped[str] = mapped_column(Text, default="{}")
    result_json: Mapped[str] = mapped_column(Text, default="{}")
    error_json: Mapped[str | None] = mapped_column(Text, nullable=True)
    checkpoint_json: Mapped[str] = mapped_column(Text, default="{}")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    runner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    """When the job gives up unfinished (a batch's completion window)."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class JobEventRow(Base):
    """One event of a job (progress, a warning, metrics of a checkpoint), numbered from 1."""

    __tablename__ = "job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_job_event_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(40), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    level: Mapped[str] = mapped_column(String(16), default="info")
    message: Mapped[str] = mapped_column(Text)
    data_json: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RecommendationEventRow(Base):
    """An interaction sent to ``POST /v1/recommendations/events``: folded into the user's next
    answers by versions registered before it, and read by the next training job of the model."""

    __tablename__ = "recommendation_events"
    __table_args__ = (Index("ix_recommendation_events_model_user", "model", "user", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128))
    user: Mapped[str] = mapped_column(String(256))
    item: Mapped[str] = mapped_column(String(256))
    weight: Mapped[float] = mapped_column(Float, default=1.0)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    """When the interaction happened (the client's timestamp, else when it was received)."""
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class ForecastObservationRow(Base):
    """A point sent to ``POST /v1/forecasts/observations``: appended to its series by the
    versions registered before it (the fitted model re-applied, not refit)."""

    __tablename__ = "forecast_observations"
    __table_args__ = (Index("ix_forecast_observations_model_series", "model", "series_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128))
    series_id: Mapped[str] = mapped_column(String(256))
    at: Mapped[float] = mapped_column(Float)
    """The point's time, seconds since the epoch (UTC)."""
    value: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RiskEntityRow(Base):
    """One entity's real-time feature state for one risk model (``card:c42``), written behind
    the server's in-memory copy and read back at start (see docs/risk.md)."""

    __tablename__ = "risk_entities"

    model: Mapped[str] = mapped_column(String(160), primary_key=True)
    """The model's name and a hash of its entity columns (a version with other columns has
    its own state)."""
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    state_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RiskRulesRow(Base):
    """One revision of a risk model's rules (every edit is a new row: the history is kept)."""

    __tablename__ = "risk_rules"
    __table_args__ = (UniqueConstraint("model", "revision", name="uq_risk_rules_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    rules_json: Mapped[str] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RiskAlertRow(Base):
    """A decision at or above the alert level, until an analyst acknowledges it."""

    __tablename__ = "risk_alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model: Mapped[str] = mapped_column(String(128), index=True)
    version: Mapped[int] = mapped_column(Integer)
    decision: Mapped[str] = mapped_column(String(16), index=True)
    score: Mapped[float] = mapped_column(Float)
    event_json: Mapped[str] = mapped_column(Text)
    rules_json: Mapped[str] = mapped_column(Text, default="[]")
    features_json: Mapped[str] = mapped_column(Text, default="[]")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    acked_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
    acked_by: Mapped[str | None] = mapped_column(String(160), nullable=True)


class RiskWebhookRow(Base):
    """Where alerts are POSTed (signed with ``secret``): every model, or ``model``'s only."""

    __tablename__ = "risk_webhooks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    secret: Mapped[str] = mapped_column(String(100))
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    min_decision: Mapped[str] = mapped_column(String(16), default="review")
    actor: Mapped[str] = mapped_column(String(160))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class RiskDeliveryRow(Base):
    """The outbox: one alert to send to one webhook, written with the alert in one
    transaction, so a restart resumes what was not yet delivered."""

    __tablename__ = "risk_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    webhook_id: Mapped[str] = mapped_column(String(40), index=True)
    alert_id: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True, default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime, nullable=True)
