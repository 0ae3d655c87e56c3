"""HTTP for /v1/risk (an AI Mass extension): training jobs, scoring, rules, alerts and their
live stream (Server-Sent Events, resumable with ``Last-Event-ID``). Thin: parse, hand to
``serving.risk.RiskService`` (or the training job kind), answer."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from aimass.errors import InvalidInput
from aimass.jobs import risk_train
from aimass.protocols.jobs import Job
from aimass.protocols.risk import (
    MAX_LIST_LIMIT,
    RiskAlert,
    RiskAlertList,
    RiskModelCreate,
    RiskRules,
    RiskRulesUpdate,
    RiskScore,
    RiskScoreRequest,
    RiskWebhook,
    RiskWebhookCreate,
    RiskWebhookList,
)
from aimass.protocols.risk import Deleted as WebhookDeleted
from aimass.server import body as bodies
from aimass.server.context import admin_action, call_context, require_admin, watched
from aimass.server.fastpath import fast
from aimass.server.openapi import errors, event_stream
from aimass.serving.risk import RiskService

router = APIRouter()
KEEPALIVE_S = 15.0


def _service(request: Request) -> RiskService:
    return request.app.state.risk


@router.post("/v1/risk/models", response_model=Job, responses=errors("v1", 400, 404, 429),
             openapi_extra=bodies.openapi_body(RiskModelCreate))  # fmt: skip
async def create_model(request: Request) -> Job:
    req = await bodies.parse(request, RiskModelCreate)
    state = request.app.state
    return await risk_train.create(state.runner, state.files, call_context(request), req)


@fast
@router.post("/v1/risk/score", response_model=RiskScore,
             responses=errors("v1", 400, 403, 404, 429, 503, 504),
             openapi_extra=bodies.openapi_body(RiskScoreRequest))  # fmt: skip
async def score(request: Request) -> Response:
    req = await bodies.parse(request, RiskScoreRequest)
    work = _service(request).score(call_context(request), req)

    async def answer() -> Response:
        return Response((await work).model_dump_json(), media_type="application/json")

    return await watched(request, answer())


@router.get("/v1/risk/models/{name}/rules", response_model=RiskRules,
            responses=errors("v1", 400, 403, 404))  # fmt: skip
async def get_rules(request: Request, name: str) -> RiskRules:
    await require_admin(request)
    return await _service(request).get_rules(call_context(request), name)


@router.put("/v1/risk/models/{name}/rules", response_model=RiskRules,
            responses=errors("v1", 400, 403, 404),
            openapi_extra=bodies.openapi_body(RiskRulesUpdate))  # fmt: skip
async def put_rules(request: Request, name: str) -> RiskRules:
    req = await bodies.parse(request, RiskRulesUpdate)
    work = _service(request).put_rules(call_context(request), name, req.rules)
    return await admin_action(request, "risk.rules", name, work)


Decision = Literal["allow", "review", "block"]


@router.get("/v1/risk/alerts", response_model=RiskAlertList, responses=errors("v1", 400, 403))
async def list_alerts(
    request: Request,
    model: Annotated[str | None, Query(max_length=128)] = None,
    decision: Decision | None = None,
    acked: bool | None = None,
    after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 20,
    order: Literal["asc", "desc"] = "asc",
) -> RiskAlertList:
    """Alerts by id: ``asc`` (oldest first) those over ``after``, ``desc`` (newest first) those
    under it (``after=0``: from the newest)."""
    await require_admin(request)
    return await _service(request).alerts(model, decision, acked, after, limit, order)


@router.post("/v1/risk/alerts/{alert_id}/ack", response_model=RiskAlert,
             responses=errors("v1", 400, 403, 404))  # fmt: skip
async def ack_alert(
    request: Request, alert_id: Annotated[int, Path(ge=1, le=2**31 - 1)]
) -> RiskAlert:
    work = _service(request).ack(call_context(request), alert_id)
    return await admin_action(request, "risk.alert.ack", str(alert_id), work)


_STREAM = {
    "200": {
        "description": "Alerts as server-sent events (id: the alert id; event: alert)",
        "content": event_stream(RiskAlert),
    }
}


@router.get("/v1/risk/alerts/stream", responses={**errors("v1", 400, 403), **_STREAM},
            response_class=StreamingResponse)  # fmt: skip
async def stream_alerts(
    request: Request,
    model: Annotated[str | None, Query(max_length=128)] = None,
    after: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    wait_s: Annotated[float, Query(gt=0, le=86400)] = 3600,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> StreamingResponse:
    """Alerts as Server-Sent Events (``id:`` the alert id, ``event: alert``); a client that
    reconnects with ``Last-Event-ID`` (or ``after``) gets every alert after that id first.
    The stream ends after ``wait_s`` seconds without an alert (a comment line is sent every
    15 s meanwhile, so proxies keep it open)."""
    await require_admin(request)
    if last_event_id is not None:
        if not (last_event_id.isascii() and last_event_id.isdigit()):
            raise InvalidInput("Last-Event-ID must be an alert id", param="Last-Event-ID")
        after = max(after, min(int(last_event_id), 2**31 - 1))
    alerts = _service(request).follow(model, after, min(KEEPALIVE_S, wait_s))

    async def events():
        idle = 0.0
        async for batch in alerts:
            if not batch:
                idle += min(KEEPALIVE_S, wait_s)
                if idle >= wait_s:
                    return
                yield b": keep-alive\n\n"
                continue
            idle = 0.0
            for alert in batch:
                data = json.dumps(alert.model_dump(), separators=(",", ":"))
                yield f"id: {alert.id}\nevent: alert\ndata: {data}\n\n".encode()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})  # fmt: skip


@router.post("/v1/risk/webhooks", response_model=RiskWebhook, responses=errors("v1", 400, 403),
             openapi_extra=bodies.openapi_body(RiskWebhookCreate))  # fmt: skip
async def create_webhook(request: Request) -> RiskWebhook:
    """Register a URL for alerts; the answer holds the signing secret, shown only here."""
    req = await bodies.parse(request, RiskWebhookCreate)
    actor = call_context(request).caller.actor
    work = _service(request).webhooks.create(req, actor)
    return await admin_action(request, "risk.webhook.create", req.url, work)


@router.get("/v1/risk/webhooks", response_model=RiskWebhookList, responses=errors("v1", 403))
async def list_webhooks(request: Request) -> RiskWebhookList:
    await require_admin(request)
    return await _service(request).webhooks.list()


@router.delete("/v1/risk/webhooks/{webhook_id}", response_model=WebhookDeleted,
               responses=errors("v1", 400, 403, 404))  # fmt: skip
async def delete_webhook(
    request: Request, webhook_id: Annotated[str, Path(max_length=40)]
) -> WebhookDeleted:
    work = _service(request).webhooks.delete(webhook_id)
    await admin_action(request, "risk.webhook.delete", webhook_id, work)
    return WebhookDeleted(id=webhook_id)
