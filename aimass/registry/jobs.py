"""Job rows (the ``jobs`` table) and their events (``job_events``): written, claimed by a runner
under a lease, read a page at a time.

A job is held by one runner at a time: ``claim`` takes jobs that are not finished and whose
lease is free or ran out, in one conditional UPDATE per job, so two servers on one database
never run the same job; ``renew`` pushes the lease forward while the runner works. A server
killed mid-job stops renewing, its lease runs out, and the next runner to look claims the job
again. Ownership is a filter as for files: a key id, ``None`` (anonymous) or ``ANY_OWNER``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from aimass.registry.db import session_scope
from aimass.registry.files import ANY_OWNER
from aimass.registry.tables import JobEventRow, JobRow, utcnow

TERMINAL = frozenset({"completed", "succeeded", "failed", "cancelled", "expired"})
"""Statuses a job never leaves (``succeeded`` is OpenAI's word for a finished fine-tuning job)."""
CANCELLING = "cancelling"

__all__ = ["ANY_OWNER", "CANCELLING", "TERMINAL", "JobEvent", "JobRecord"]

_JSON_FIELDS = ("timestamps", "params", "progress", "result", "checkpoint")


@dataclass(frozen=True)
class JobRecord:
    """One job, detached from the session, its JSON columns parsed."""

    id: str
    kind: str
    owner_key_id: int | None
    owner: str
    status: str
    timestamps: dict[str, int] = field(default_factory=dict)
    """Unix seconds at which each status was first entered."""
    params: dict[str, Any] = field(default_factory=dict)
    progress: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    checkpoint: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    cancel_requested: bool = False
    runner: str | None = None
    lease_until: datetime | None = None
    expires_at: datetime | None = None
    created_at: datetime = field(default_factory=utcnow)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    @classmethod
    def of(cls, row: JobRow) -> JobRecord:
        values = {f: json.loads(getattr(row, f"{f}_json")) for f in _JSON_FIELDS}
        return cls(
            id=row.id,
            kind=row.kind,
            owner_key_id=row.owner_key_id,
            owner=row.owner,
            status=row.status,
            error=json.loads(row.error_json) if row.error_json else None,
            attempts=row.attempts,
            cancel_requested=row.cancel_requested,
            runner=row.runner,
            lease_until=row.lease_until,
            expires_at=row.expires_at,
            created_at=row.created_at,
            **values,
        )


@dataclass(frozen=True)
class JobEvent:
    seq: int
    level: str
    message: str
    data: dict[str, Any]
    created_at: datetime


def unix(at: datetime) -> int:
    return int((at - datetime(1970, 1, 1)).total_seconds())


def add(url: str, record: JobRecord) -> None:
    now = record.created_at
    with session_scope(url) as s:
        s.add(
            JobRow(
                id=record.id,
                kind=record.kind,
                owner_key_id=record.owner_key_id,
                owner=record.owner[:160],
                status=record.status,
                timestamps_json=json.dumps({record.status: unix(now)}),
                params_json=json.dumps(record.params),
                progress_json=json.dumps(record.progress),
                result_json="{}",
                checkpoint_json="{}",
                attempts=0,
                cancel_requested=False,
                expires_at=record.expires_at,
                created_at=now,
                updated_at=now,
            )
        )


def _mine(owner: object):
    if owner is ANY_OWNER:
        return True
    return JobRow.owner_key_id.is_(None) if owner is None else JobRow.owner_key_id == owner


def get(url: str, job_id: str, owner: object = ANY_OWNER) -> JobRecord | None:
    with session_scope(url) as s:
        row = s.scalars(select(JobRow).where(JobRow.id == job_id, _mine(owner))).first()
        return JobRecord.of(row) if row else None


def page(
    url: str, owner: object, *, kind: str | None, after: JobRecord | None, limit: int
) -> list[JobRecord]:
    """Up to ``limit`` jobs, newest first, those older than ``after`` only."""
    q = select(JobRow).where(_mine(owner))
    if kind is not None:
        q = q.where(JobRow.kind == kind)
    if after is not None:
        at, jid = after.created_at, after.id
        q = q.where(or_(JobRow.created_at < at, and_(JobRow.created_at == at, JobRow.id < jid)))
    q = q.order_by(JobRow.created_at.desc(), JobRow.id.desc()).limit(limit)
    with session_scope(url) as s:
        return [JobRecord.of(r) for r in s.scalars(q)]


def count_unfinished(url: str, owner_key_id: int | None) -> int:
    q = select(func.count()).where(_mine(owner_key_id), JobRow.status.not_in(TERMINAL))
    with session_scope(url) as s:
        return int(s.scalar(q) or 0)


def claim(url: str, runner: str, lease_s: float, limit: int, kinds: set[str]) -> list[JobRecord]:
    """Take up to ``limit`` unfinished jobs of ``kinds`` whose lease is free or ran out, oldest
    first; each claim counts as an attempt."""
    now = utcnow()
    free = or_(JobRow.lease_until.is_(None), JobRow.lease_until < now)
    q = (
        select(JobRow.id)
        .where(JobRow.status.not_in(TERMINAL), JobRow.kind.in_(kinds), free)
        .order_by(JobRow.created_at, JobRow.id)
        .limit(limit)
    )
    claimed = []
    with session_scope(url) as s:
        for job_id in list(s.scalars(q)):
            taken = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, free, JobRow.status.not_in(TERMINAL))
                .values(
                    runner=runner,
                    lease_until=now + timedelta(seconds=lease_s),
                    attempts=JobRow.attempts + 1,
                    updated_at=now,
                )
            )
            if taken.rowcount:
                claimed.append(job_id)
    return [job for job_id in claimed if (job := get(url, job_id)) is not None]


def renew(url: str, runner: str, job_ids: list[str], lease_s: float) -> set[str]:
    """Extend the leases this runner holds; the ids among them whose cancel was requested."""
    if not job_ids:
        return set()
    now = utcnow()
    mine = and_(JobRow.id.in_(job_ids), JobRow.runner == runner)
    with session_scope(url) as s:
        s.execute(update(JobRow).where(mine).values(lease_until=now + timedelta(seconds=lease_s)))
        return set(s.scalars(select(JobRow.id).where(mine, JobRow.cancel_requested)))


def release(url: str, runner: str, job_id: str) -> None:
    """Give a job back at a graceful stop: free to claim at once, the attempt not counted."""
    with session_scope(url) as s:
        s.execute(
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.runner == runner, JobRow.status.not_in(TERMINAL))
            .values(lease_until=None, attempts=JobRow.attempts - 1)
        )


def update_job(
    url: str,
    job_id: str,
    *,
    status: str | None = None,
    event: tuple[str, str, dict[str, Any]] | None = None,
    **fields: Any,
) -> None:
    """Set ``status`` (stamping when it was first entered; ignored while a cancel is pending,
    unless it ends the job) and any of ``progress``, ``result``, ``error``, ``checkpoint`` (JSON
    values) or plain columns. ``event`` (level, message, data) is appended in the same
    transaction: a client that sees the job end also finds the event that says so."""
    with session_scope(url) as s:
        row = s.get(JobRow, job_id)
        if row is None:
            return
        if event is not None:
            _append_event(s, job_id, *event)
        now = utcnow()
        if row.cancel_requested and status not in TERMINAL:
            status = None  # a cancel, once asked, shows until the job ends
        if status is not None and status != row.status:
            stamps = json.loads(row.timestamps_json)
            stamps.setdefault(status, unix(now))
            row.status, row.timestamps_json = status, json.dumps(stamps)
        for name, value in fields.items():
            if name in ("progress", "result", "checkpoint"):
                setattr(row, f"{name}_json", json.dumps(value))
            elif name == "error":
                row.error_json = json.dumps(value) if value is not None else None
            else:
                setattr(row, name, value)
        if status in TERMINAL:
            row.lease_until = None
        row.updated_at = now


def request_cancel(url: str, job_id: str) -> JobRecord | None:
    """Mark an unfinished job ``cancelling`` (its runner ends it), or ``cancelled`` at once if
    no runner ever claimed it (``claim`` skips it from then on); the job as it stands after."""
    with session_scope(url) as s:
        row = s.get(JobRow, job_id)
        if row is not None and row.status not in TERMINAL and not row.cancel_requested:
            row.cancel_requested = True
            stamps = json.loads(row.timestamps_json)
            stamps.setdefault(CANCELLING, unix(utcnow()))
            row.status = CANCELLING
            if row.runner is None:
                stamps.setdefault("cancelled", unix(utcnow()))
                row.status = "cancelled"
            row.timestamps_json = json.dumps(stamps)
    return get(url, job_id)


def add_event(
    url: str, job_id: str, level: str, message: str, data: dict[str, Any] | None = None
) -> int:
    """Append an event; its number."""
    with session_scope(url) as s:
        return _append_event(s, job_id, level, message, data)


def _append_event(
    s: Session, job_id: str, level: str, message: str, data: dict[str, Any] | None
) -> int:
    last = s.scalar(select(func.max(JobEventRow.seq)).where(JobEventRow.job_id == job_id))
    seq = int(last or 0) + 1
    s.add(
        JobEventRow(
            job_id=job_id,
            seq=seq,
            level=level,
            message=message,
            data_json=json.dumps(data or {}),
            created_at=utcnow(),
        )
    )
    return seq


def events(url: str, job_id: str, after: int = 0, limit: int = 100) -> list[JobEvent]:
    """Events numbered after ``after``, oldest first."""
    q = (
        select(JobEventRow)
        .where(JobEventRow.job_id == job_id, JobEventRow.seq > after)
        .order_by(JobEventRow.seq)
        .limit(limit)
    )
    with session_scope(url) as s:
        return [
            JobEvent(r.seq, r.level, r.message, json.loads(r.data_json), r.created_at)
            for r in s.scalars(q)
        ]
