"""Rows of the risk service: entity feature state, rule revisions and alerts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select

from aimass.registry.db import session_scope
from aimass.registry.tables import (
    RiskAlertRow,
    RiskDeliveryRow,
    RiskEntityRow,
    RiskRulesRow,
    RiskWebhookRow,
    utcnow,
)

DECISIONS = ("allow", "review", "block")


def load_entities(url: str, model: str) -> dict[str, dict[str, Any]]:
    with session_scope(url) as s:
        rows = s.scalars(select(RiskEntityRow).filter_by(model=model))
        return {r.key: json.loads(r.state_json) for r in rows}


def save_entities(url: str, model: str, states: dict[str, dict[str, Any]]) -> None:
    """Write ``states`` (replacing each key's row) in one transaction: two statements, the
    insert one ``executemany`` of plain rows (no ORM objects: this runs every second)."""
    if not states:
        return
    now = utcnow()
    table = RiskEntityRow.__table__
    with session_scope(url) as s:
        s.execute(delete(table).where(table.c.model == model, table.c.key.in_(list(states))))
        s.execute(
            insert(table),
            [
                {"model": model, "key": k, "state_json": json.dumps(v), "updated_at": now}
                for k, v in states.items()
            ],
        )


@dataclass
class RulesRevision:
    revision: int
    rules: list[dict[str, str]]
    actor: str
    created_at: datetime


def current_rules(url: str, model: str) -> RulesRevision | None:
    with session_scope(url) as s:
        row = s.scalar(
            select(RiskRulesRow).filter_by(model=model).order_by(RiskRulesRow.revision.desc())
        )
        if row is None:
            return None
        return RulesRevision(row.revision, json.loads(row.rules_json), row.actor, row.created_at)


def put_rules(url: str, model: str, rules: list[dict[str, str]], actor: str) -> RulesRevision:
    with session_scope(url) as s:
        top = s.scalar(select(func.max(RiskRulesRow.revision)).filter_by(model=model)) or 0
        row = RiskRulesRow(
            model=model, revision=top + 1, rules_json=json.dumps(rules), actor=actor[:160]
        )
        s.add(row)
        s.flush()
        return RulesRevision(row.revision, rules, row.actor, row.created_at)


@dataclass
class NewAlert:
    """An alert to write (``add_alerts``)."""

    model: str
    version: int
    decision: str
    score: float
    event: dict[str, Any]
    rules: list[str]
    features: list[dict[str, Any]]


@dataclass
class Alert(NewAlert):
    """A written alert."""

    id: int
    created_at: datetime
    acked_at: datetime | None
    acked_by: str | None


def _alert(row: RiskAlertRow) -> Alert:
    return Alert(
        id=row.id,
        model=row.model,
        version=row.version,
        decision=row.decision,
        score=row.score,
        event=json.loads(row.event_json),
        rules=json.loads(row.rules_json),
        features=json.loads(row.features_json),
        created_at=row.created_at,
        acked_at=row.acked_at,
        acked_by=row.acked_by,
    )


def add_alert(url: str, model: str, version: int, decision: str, score: float,
              event: dict, rules: list[str], features: list[dict]) -> Alert:  # fmt: skip
    return add_alerts(url, [NewAlert(model, version, decision, score, event, rules, features)])[0]


def add_alerts(url: str, new: list[NewAlert]) -> list[Alert]:
    """Write ``new`` alerts and their webhook outbox rows in one transaction (one commit for
    the lot); the written alerts, ids given, in order."""
    with session_scope(url) as s:
        now = utcnow()
        added = [
            RiskAlertRow(
                model=a.model,
                version=a.version,
                decision=a.decision,
                score=a.score,
                event_json=json.dumps(a.event),
                rules_json=json.dumps(a.rules),
                features_json=json.dumps(a.features),
                created_at=now,
            )
            for a in new
        ]
        s.add_all(added)
        s.flush()
        hooks = list(s.scalars(select(RiskWebhookRow)))
        s.add_all(
            RiskDeliveryRow(webhook_id=h.id, alert_id=row.id, next_at=row.created_at)
            for row in added
            for h in hooks
            if (h.model is None or h.model == row.model)
            and DECISIONS.index(h.min_decision) <= DECISIONS.index(row.decision)
        )
        return [_alert(row) for row in added]


def alerts(
    url: str,
    *,
    model: str | None = None,
    decision: str | None = None,
    acked: bool | None = None,
    after: int = 0,
    limit: int = 100,
    newest_first: bool = False,
) -> list[Alert]:
    """Alerts after the id ``after`` in list order: oldest first, with id over ``after`` (ids
    only grow: a stream resumes by id); ``newest_first``: with id under ``after`` (0: none)."""
    query = select(RiskAlertRow)
    if not newest_first:
        query = query.where(RiskAlertRow.id > after)
    elif after:
        query = query.where(RiskAlertRow.id < after)
    if model is not None:
        query = query.where(RiskAlertRow.model == model)
    if decision is not None:
        query = query.where(RiskAlertRow.decision == decision)
    if acked is not None:
        column = RiskAlertRow.acked_at
        query = query.where(column.is_not(None) if acked else column.is_(None))
    with session_scope(url) as s:
        order = RiskAlertRow.id.desc() if newest_first else RiskAlertRow.id
        rows = s.scalars(query.order_by(order).limit(limit))
        return [_alert(r) for r in rows]


def ack(url: str, alert_id: int, actor: str) -> Alert | None:
    with session_scope(url) as s:
        row = s.get(RiskAlertRow, alert_id)
        if row is None:
            return None
        if row.acked_at is None:
            row.acked_at, row.acked_by = utcnow(), actor[:160]
        s.flush()
        return _alert(row)


@dataclass
class Webhook:
    id: str
    url: str
    secret: str
    model: str | None
    min_decision: str
    actor: str
    created_at: datetime


def _hook(row: RiskWebhookRow) -> Webhook:
    return Webhook(
        row.id, row.url, row.secret, row.model, row.min_decision, row.actor, row.created_at
    )


def add_webhook(url: str, hook: Webhook) -> Webhook:
    with session_scope(url) as s:
        row = RiskWebhookRow(
            id=hook.id, url=hook.url, secret=hook.secret, model=hook.model,
            min_decision=hook.min_decision, actor=hook.actor[:160], created_at=hook.created_at,
        )  # fmt: skip
        s.add(row)
        s.flush()
        return _hook(row)


def webhooks(url: str) -> list[Webhook]:
    with session_scope(url) as s:
        return [_hook(r) for r in s.scalars(select(RiskWebhookRow).order_by(RiskWebhookRow.id))]


def delete_webhook(url: str, hook_id: str) -> bool:
    """Remove a webhook and its undelivered outbox rows; False if there was none."""
    with session_scope(url) as s:
        row = s.get(RiskWebhookRow, hook_id)
        if row is None:
            return False
        s.delete(row)
        s.execute(
            delete(RiskDeliveryRow).where(
                RiskDeliveryRow.webhook_id == hook_id, RiskDeliveryRow.status == "pending"
            )
        )
        return True


@dataclass
class Delivery:
    id: int
    attempts: int
    hook: Webhook
    alert: Alert


def due_deliveries(url: str, limit: int = 50) -> list[Delivery]:
    """Pending outbox rows whose time has come, with their webhook and alert."""
    with session_scope(url) as s:
        query = (
            select(RiskDeliveryRow, RiskWebhookRow, RiskAlertRow)
            .join(RiskWebhookRow, RiskWebhookRow.id == RiskDeliveryRow.webhook_id)
            .join(RiskAlertRow, RiskAlertRow.id == RiskDeliveryRow.alert_id)
            .where(RiskDeliveryRow.status == "pending", RiskDeliveryRow.next_at <= utcnow())
            .order_by(RiskDeliveryRow.id)
            .limit(limit)
        )
        return [Delivery(d.id, d.attempts, _hook(h), _alert(a)) for d, h, a in s.execute(query)]


def delivery_done(url: str, delivery_id: int, error: str | None, retry_at: datetime | None) -> None:
    """Record one attempt: delivered (``error`` None), to retry at ``retry_at``, or failed
    for good (``retry_at`` None)."""
    with session_scope(url) as s:
        row = s.get(RiskDeliveryRow, delivery_id)
        if row is None:
            return
        row.attempts += 1
        row.last_error = error
        if error is None:
            row.status, row.delivered_at = "delivered", utcnow()
        elif retry_at is None:
            row.status = "failed"
        else:
            row.next_at = retry_at


def deliveries(url: str, hook_id: str) -> dict[str, int]:
    """How many of a webhook's deliveries are in each status."""
    with session_scope(url) as s:
        found = s.execute(
            select(RiskDeliveryRow.status, func.count())
            .where(RiskDeliveryRow.webhook_id == hook_id)
            .group_by(RiskDeliveryRow.status)
        )
        return {status: n for status, n in found}
