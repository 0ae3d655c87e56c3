"""HTTP API of access control: ``GET /v1/usage`` and admin key management under ``/v1/keys``.

Usage: an admin key (or anyone, when auth is off and no key is sent) sees every key's rows
and may filter by ``key``; any other key sees only its own. Pending counters are flushed
first, so the answer includes requests finished a moment ago.
"""

from __future__ import annotations

from datetime import date

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from aimass.access.gate import Gate
from aimass.errors import InvalidInput, UsageNotAllowed
from aimass.protocols.admin import Key, KeyCreate, KeyList, NewKey, UsageList
from aimass.registry import keys as keystore
from aimass.registry.usage import query_usage
from aimass.server import body as bodies
from aimass.server.auth import caller_of
from aimass.server.context import audited, require_admin
from aimass.server.openapi import errors

router = APIRouter()


def _gate(request: Request) -> Gate:
    return request.app.state.gate


def _day(value: str | None, param: str) -> str | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise InvalidInput(f"{param} must be a date like 2025-01-31", param=param) from None


@router.get("/v1/usage", response_model=UsageList, responses=errors("v1", 400, 403))
async def get_usage(
    request: Request,
    key: str | None = None,
    model: str | None = None,
    since: str | None = None,
    until: str | None = None,
) -> dict:
    """Requests, tokens and errors per key, model and UTC day (newest first)."""
    gate = _gate(request)
    caller = caller_of(request)
    if not gate.is_admin(caller):
        own = caller.key.name if caller.key else None
        if key is not None and key != own:
            raise UsageNotAllowed("only an admin key may read another key's usage", param="key")
        key = own
    await gate.sync()
    rows = await run_in_threadpool(
        query_usage,
        gate.url,
        key_name=key,
        model=model,
        since=_day(since, "since"),
        until=_day(until, "until"),
    )
    return {"object": "list", "data": rows}


@router.post(
    "/v1/keys",
    response_model=NewKey,
    responses=errors("v1", 400, 403, 409),
    openapi_extra=bodies.openapi_body(KeyCreate),
)
async def create_key(request: Request) -> dict:
    """Create a key; the answer is the only time the key itself is shown.

    The body is validated inside the audited block (not by a FastAPI body parameter), so a
    refused attempt with a malformed body is in the audit log too."""
    await require_admin(request)
    raw = await request.body()
    async with audited(request, "key.create", _name_of(raw)):
        body = bodies.validate(KeyCreate, bodies.loads(raw, empty={}))
        expires = keystore.parse_duration(body.expires) if body.expires else None
        models = keystore.parse_models(",".join(body.models)) if body.models is not None else None
        info, key = await run_in_threadpool(
            lambda: keystore.create_key(
                _gate(request).url,
                body.name,
                models=models,
                admin=body.admin,
                rpm=body.rpm,
                tpm=body.tpm,
                budget_tokens=body.budget_tokens,
                budget_period=body.budget_period,
                expires_in=expires,
            )
        )
    return {**info.public_dict(), "key": key}


def _name_of(raw: bytes) -> str:
    """The key name a create request names, for the audit entry, even if the body is bad."""
    try:
        name = orjson.loads(raw).get("name")
    except (ValueError, AttributeError):
        return ""
    return name if isinstance(name, str) else ""


@router.get("/v1/keys", response_model=KeyList, responses=errors("v1", 403))
async def list_keys(request: Request) -> dict:
    await require_admin(request)
    infos = await run_in_threadpool(keystore.list_keys, _gate(request).url)
    return {"object": "list", "data": [k.public_dict() for k in infos]}


@router.post("/v1/keys/{name}/rotate", response_model=NewKey, responses=errors("v1", 403, 404, 409))
async def rotate_key(request: Request, name: str) -> dict:
    """New secret for ``name``; the old key stops working within seconds."""
    await require_admin(request)
    async with audited(request, "key.rotate", name):
        info, key = await run_in_threadpool(keystore.rotate_key, _gate(request).url, name)
    return {**info.public_dict(), "key": key}


@router.delete("/v1/keys/{name}", response_model=Key, responses=errors("v1", 403, 404))
async def revoke_key(request: Request, name: str) -> dict:
    await require_admin(request)
    async with audited(request, "key.revoke", name):
        info = await run_in_threadpool(keystore.revoke_key, _gate(request).url, name)
    return info.public_dict()
