"""The console's pages: each one renders what the API's own routes and services answer.

A page calls the same function an API client reaches (``admin_list``, ``list_keys``,
``get_usage``, ``list_alerts``, the jobs, batch and vector store services) with the request the
console middleware authenticated, so an admin page refuses a user key with the same 403, and
every listing shows exactly what the API would. Actions on a page are forms that
``static/console.js`` sends to ``/ui/api/<the API route>`` with the CSRF token. A new API
family adds a page by copying one ``@router.get`` here, a template, and (for a playground tab)
one block of ``playground.html``.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.templating import Jinja2Templates

from aimass.errors import AimassError, Forbidden, InvalidInput, NotFound
from aimass.registry import audit
from aimass.server.admin import access as admin_access
from aimass.server.admin import models as admin_models
from aimass.server.auth import caller_of
from aimass.server.context import call_context, require_admin
from aimass.server.openai import risk as risk_routes
from aimass.server.ui.charts import bars
from aimass.server.ui.middleware import SIGN_IN, session_of
from aimass.server.ui.sessions import COOKIE, CSRF_FIELD, LOGIN_COOKIE, store_of

router = APIRouter(prefix="/ui", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
templates.env.filters["utc"] = lambda unix: (
    datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%d %H:%M:%S") if unix else ""
)
LISTED = 100
"""Rows a listing page asks the API for (the most its list routes give at once)."""

NAV = [
    ("models", "Models", True),
    ("playground", "Playground", False),
    ("keys", "Keys", True),
    ("usage", "Usage", False),
    ("audit", "Audit", True),
    ("jobs", "Jobs", False),
    ("stores", "Stores", False),
    ("alerts", "Alerts", True),
    ("metrics", "Metrics", False),
]
"""(page, label, admin only): the navigation bar, in order."""


def _cookie_args(request: Request, path: str = "/ui") -> dict:
    return {
        "httponly": True,
        "samesite": "strict",
        "path": path,
        "secure": request.url.scheme == "https",
    }


def page(request: Request, name: str, status: int = 200, **values) -> Response:
    """Render ``templates/<name>.html`` with what every page needs (navigation, CSRF)."""
    gate = request.app.state.gate
    caller = caller_of(request)
    found = session_of(request.scope)
    values.update(
        page=name,
        nav=NAV,
        admin=gate.is_admin(caller),
        who=caller.key.name if caller.key else "anonymous",
        signed_in=found is not None,
        csrf=found[1].csrf if found else "",
    )
    return templates.TemplateResponse(request, f"{name}.html", values, status_code=status)


def denied(request: Request, err: AimassError) -> Response:
    heading = {400: "Not valid", 404: "Not found"}.get(err.status, "Not allowed")
    return page(request, "denied", status=err.status, message=str(err), heading=heading)


@router.get("")
async def home(request: Request) -> Response:
    target = "models" if request.app.state.gate.is_admin(caller_of(request)) else "playground"
    return RedirectResponse(f"/ui/{target}", status_code=303)


@router.get("/login")
async def sign_in_form(request: Request) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(request, "login", login_token=token, error=None)
    response.set_cookie(LOGIN_COOKIE, token, **_cookie_args(request, SIGN_IN))
    return response


@router.post("/login")
async def sign_in(request: Request) -> Response:
    """Check the key as the access middleware would, then start a session for it."""
    form = await request.form()
    key, token = form.get("key"), form.get(CSRF_FIELD)
    expected = request.cookies.get(LOGIN_COOKIE)
    if not expected or not isinstance(token, str) or not secrets.compare_digest(token, expected):
        return _sign_in_again(request, "The sign-in form expired: please try again.", 403)
    if not isinstance(key, str) or not key.strip():
        return _sign_in_again(request, "Enter an API key.", 400)
    gate = request.app.state.gate
    header = [(b"authorization", b"Bearer " + key.strip().encode())]
    try:
        caller = await gate.authenticate(header, request.client.host if request.client else "")
    except AimassError as err:
        return _sign_in_again(request, f"Sign-in refused: {err}", err.status)
    if caller.key is None:
        return _sign_in_again(request, "Sign-in refused: invalid API key", 401)
    sid, _ = store_of(request.app.state).create(key.strip())
    target = "/ui/models" if caller.key.admin else "/ui/playground"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, sid, **_cookie_args(request))
    response.delete_cookie(LOGIN_COOKIE, **_cookie_args(request, SIGN_IN))
    return response


def _sign_in_again(request: Request, error: str, status: int) -> Response:
    token = secrets.token_urlsafe(24)
    response = page(request, "login", status=status, login_token=token, error=error)
    response.set_cookie(LOGIN_COOKIE, token, **_cookie_args(request, SIGN_IN))
    return response


@router.post("/logout")
async def sign_out(request: Request) -> Response:
    found = session_of(request.scope)
    store_of(request.app.state).drop(found[0] if found else None)
    response = RedirectResponse(SIGN_IN, status_code=303)
    response.delete_cookie(COOKIE, **_cookie_args(request))
    return response


@router.get("/models")
async def models(request: Request) -> Response:
    try:
        listing = await admin_models.admin_list(request)
    except Forbidden as err:
        return denied(request, err)
    return page(request, "models", models=listing["data"])


@router.get("/playground")
async def playground(request: Request) -> Response:
    listing = await admin_models.openai_models(request)
    names = sorted({m["id"] for m in listing["data"]})
    return page(request, "playground", models=names)


@router.get("/keys")
async def keys(request: Request) -> Response:
    try:
        listing = await admin_access.list_keys(request)
    except Forbidden as err:
        return denied(request, err)
    return page(request, "keys", keys=listing["data"])


@router.get("/usage")
async def usage(
    request: Request, key: str | None = None, model: str | None = None, since: str | None = None
) -> Response:
    try:
        listing = await admin_access.get_usage(
            request, key=key or None, model=model or None, since=since or None
        )
    except (Forbidden, InvalidInput) as err:
        return denied(request, err)
    rows = listing["data"]
    requests: dict[str, float] = defaultdict(float)
    tokens: dict[str, float] = defaultdict(float)
    for row in rows:
        requests[row["date"]] += row["requests"]
        tokens[row["date"]] += row["total_tokens"]
    charts = [
        bars(sorted(requests.items()), "requests per day"),
        bars(sorted(tokens.items()), "tokens per day"),
    ]
    filters = {"key": key or "", "model": model or "", "since": since or ""}
    return page(request, "usage", rows=rows, charts=charts, filters=filters)


@router.get("/audit")
async def audit_log(
    request: Request, actor: str | None = None, action: str | None = None, limit: int = 100
) -> Response:
    try:
        await require_admin(request)
    except Forbidden as err:
        return denied(request, err)
    gate = request.app.state.gate
    entries = await run_in_threadpool(
        audit.entries, gate.url, limit=max(1, min(limit, 1000)), actor=actor or None,
        action=action or None,
    )  # fmt: skip
    filters = {"actor": actor or "", "action": action or ""}
    return page(request, "audit", entries=entries, filters=filters)


@router.get("/jobs")
async def jobs(request: Request) -> Response:
    ctx = call_context(request)
    state = request.app.state
    batches = await state.batches.list(ctx, None, 50)
    others = await state.jobs.list(ctx, None, None, 50)
    return page(request, "jobs", batches=batches.data, jobs=others.data)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return page(request, "metrics")


@router.get("/metrics/history")
async def metrics_history(request: Request) -> Response:
    """The samples behind the charts, as JSON (the metrics page polls it)."""
    history = request.app.state.metrics_history
    return JSONResponse({"interval_s": history.interval_s, "samples": list(history.samples)})


@router.get("/stores")
async def stores(request: Request, after: str | None = None) -> Response:
    """The caller's vector stores (an admin key's: every store), newest first, as the API lists."""
    page_of = {"limit": LISTED, "order": "desc", "after": after or None, "before": None}
    try:
        listing = await request.app.state.vector_stores.list(call_context(request), **page_of)
    except (InvalidInput, NotFound) as err:
        return denied(request, err)
    return page(request, "stores", stores=listing["data"], listing=listing)


@router.get("/stores/{store_id}")
async def store(request: Request, store_id: str) -> Response:
    """One store: its files with their status and last error, a search box, an upload form."""
    ctx = call_context(request)
    service = request.app.state.vector_stores
    page_of = {"limit": LISTED, "order": "desc", "after": None, "before": None}
    try:
        found = await service.retrieve(ctx, store_id)
        files = await service.list_files(ctx, store_id, status=None, batch_id=None, **page_of)
    except NotFound as err:
        return denied(request, err)
    names = {}
    for f in files["data"]:
        try:
            names[f["id"]] = (await request.app.state.files.retrieve(ctx, f["id"])).filename
        except NotFound:  # deleted from /v1/files: its chunks stay in the store
            names[f["id"]] = ""
    return page(request, "store", store=found, files=files["data"], names=names)


DECISIONS = ("allow", "review", "block")
ACKED = {"": None, "no": False, "yes": True}


@router.get("/alerts")
async def alerts(
    request: Request,
    model: str | None = None,
    decision: str | None = None,
    acked: str | None = None,
    order: str = "desc",
    after: int = 0,
) -> Response:
    """Risk alerts through the API's own route: admin keys only, its filters, its paging (by
    id, newest first unless asked: ``after`` is the last id seen)."""
    filters = {"model": model or "", "decision": decision or "", "acked": acked or "",
               "order": order}  # fmt: skip
    try:
        if filters["decision"] not in ("", *DECISIONS):
            raise InvalidInput(f"decision must be one of {', '.join(DECISIONS)}", param="decision")
        if filters["acked"] not in ACKED:
            raise InvalidInput("acked must be yes or no", param="acked")
        if order not in ("asc", "desc"):
            raise InvalidInput("order must be asc or desc", param="order")
        listing = await risk_routes.list_alerts(
            request, model=model or None, decision=decision or None,
            acked=ACKED[filters["acked"]], after=max(0, min(after, 2**31 - 1)), limit=LISTED,
            order=order,
        )  # fmt: skip
    except (Forbidden, InvalidInput) as err:
        return denied(request, err)
    more = urlencode({**filters, "after": listing.data[-1].id}) if listing.has_more else None
    return page(request, "alerts", alerts=listing.data, more=more, filters=filters,
                decisions=DECISIONS)  # fmt: skip
