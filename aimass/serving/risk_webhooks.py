"""Alert webhooks: registration (a signing secret shown once) and delivery from the outbox.

Every alert is written with one outbox row per matching webhook in the same transaction
(``registry.risk.add_alert``), so an alert is never without its deliveries, and a delivery
not yet made when the server stops (or crashes) is still pending when it starts again. The
sender polls the outbox every ``POLL_S`` (and at once when an alert is written), POSTs each
alert as JSON with ``X-AIMass-Signature: sha256=<hex HMAC-SHA256 of the body with the
secret>``, ``X-AIMass-Delivery`` (the outbox id: a receiver drops duplicates by it) and
``X-AIMass-Timestamp``. A 2xx answer delivers it; anything else (an error status, a refused
connection, no answer within ``TIMEOUT_S``) is retried after ``BACKOFF_S * 2**attempts``
(capped at ``MAX_BACKOFF_S``) up to ``MAX_ATTEMPTS`` times, then marked failed.
Delivery is at least once: a crash between the POST and its record sends it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import secrets
import time
from datetime import timedelta

import httpx

from aimass.errors import InvalidInput, NotFound
from aimass.protocols.risk import (
    RiskAlert,
    RiskWebhook,
    RiskWebhookCreate,
    RiskWebhookList,
    TopFeature,
)
from aimass.registry import risk as rows
from aimass.registry.jobs import unix
from aimass.registry.tables import utcnow

POLL_S = 0.5
TIMEOUT_S = 5.0
BACKOFF_S = 0.5
MAX_BACKOFF_S = 300.0
MAX_ATTEMPTS = 10

log = logging.getLogger("aimass.risk")


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def alert_object(a: rows.Alert) -> RiskAlert:
    return RiskAlert(
        id=a.id, model=a.model, version=a.version, decision=a.decision, score=a.score,
        event=a.event, rules=a.rules, top_features=[TopFeature(**t) for t in a.features],
        created_at=unix(a.created_at), acked_at=unix(a.acked_at) if a.acked_at else None,
        acked_by=a.acked_by,
    )  # fmt: skip


def webhook_object(hook: rows.Webhook, *, secret: bool = False, **extra) -> RiskWebhook:
    return RiskWebhook(
        id=hook.id, url=hook.url, model=hook.model, min_decision=hook.min_decision,
        created_at=unix(hook.created_at), secret=hook.secret if secret else None, **extra,
    )  # fmt: skip


class WebhookSender:
    """Webhooks of one server and the task that empties the outbox."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=TIMEOUT_S, follow_redirects=False)
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._client is not None:
            await self._client.aclose()

    def wake(self) -> None:
        self._wake.set()

    async def create(self, req: RiskWebhookCreate, actor: str) -> RiskWebhook:
        try:
            if not httpx.URL(req.url).host:
                raise ValueError("no host")
        except (httpx.InvalidURL, ValueError) as exc:
            raise InvalidInput(f"url is not a usable URL: {exc}", param="url") from None
        hook = rows.Webhook(
            id=f"wh_{secrets.token_hex(12)}", url=req.url,
            secret=f"whsec_{secrets.token_urlsafe(32)}", model=req.model,
            min_decision=req.min_decision, actor=actor, created_at=utcnow(),
        )  # fmt: skip
        return webhook_object(
            await asyncio.to_thread(rows.add_webhook, self.url, hook), secret=True
        )

    async def list(self) -> RiskWebhookList:
        hooks = await asyncio.to_thread(rows.webhooks, self.url)
        counts = [await asyncio.to_thread(rows.deliveries, self.url, h.id) for h in hooks]
        return RiskWebhookList(
            data=[webhook_object(h, deliveries=c) for h, c in zip(hooks, counts, strict=True)]
        )

    async def delete(self, hook_id: str) -> None:
        if not await asyncio.to_thread(rows.delete_webhook, self.url, hook_id):
            raise NotFound(f"no webhook with id {hook_id!r}", param="webhook_id")

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_S):
                    await self._wake.wait()
            self._wake.clear()
            try:
                due = await asyncio.to_thread(rows.due_deliveries, self.url)
                await asyncio.gather(*(self._send(d) for d in due))
            except Exception:  # the database was away: the outbox is still there next time
                log.exception("risk: webhook delivery pass failed")

    async def _send(self, delivery: rows.Delivery) -> None:
        body = alert_object(delivery.alert).model_dump_json().encode()
        headers = {
            "content-type": "application/json",
            "x-aimass-signature": signature(delivery.hook.secret, body),
            "x-aimass-delivery": str(delivery.id),
            "x-aimass-timestamp": str(int(time.time())),
        }
        error = None
        try:
            answer = await self._client.post(delivery.hook.url, content=body, headers=headers)
            if not 200 <= answer.status_code < 300:
                error = f"HTTP {answer.status_code}"
        except Exception as exc:  # any failure to send (refused, timeout, bad URL) is retried
            error = f"{type(exc).__name__}: {exc}"[:500]
        retry_at = None
        if error is not None and delivery.attempts + 1 < MAX_ATTEMPTS:
            wait = min(BACKOFF_S * 2**delivery.attempts, MAX_BACKOFF_S)
            retry_at = utcnow() + timedelta(seconds=wait)
        await asyncio.to_thread(rows.delivery_done, self.url, delivery.id, error, retry_at)
