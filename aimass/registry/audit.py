"""The audit log: every administrative action, appended synchronously so none is lost.

Admin actions are rare (register, load, unload, key changes), so each entry is its own small
transaction written before the caller answers; a server crash right after an action cannot
lose its record.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from aimass.registry.db import session_scope
from aimass.registry.tables import AuditEntry, utcnow


def append(url: str, *, actor: str, action: str, target: str, source: str, result: str) -> None:
    """Record one action; ``result`` is ``ok``, ``denied`` or ``error: <message>``."""
    with session_scope(url) as s:
        s.add(
            AuditEntry(
                at=utcnow(),
                actor=actor[:160],
                action=action[:80],
                target=target[:255],
                source=source[:255],
                result=result[:2000],
            )
        )


def entries(
    url: str,
    *,
    limit: int = 100,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
) -> list[dict]:
    """Newest entries first."""
    q = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if actor is not None:
        q = q.where(AuditEntry.actor == actor)
    if action is not None:
        q = q.where(AuditEntry.action == action)
    if since is not None:
        q = q.where(AuditEntry.at >= since)
    with session_scope(url) as s:
        return [
            {
                "at": e.at.isoformat(timespec="seconds") + "Z",
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "source": e.source,
                "result": e.result,
            }
            for e in s.scalars(q)
        ]
