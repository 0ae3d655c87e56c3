"""Renders every error once, in the shape of the protocol the client speaks.

``/v1/...`` answers in OpenAI's shape ``{"error": {"message", "type", "param", "code"}}``;
everything else in the Open Inference Protocol's ``{"error": "..."}``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from aimass.errors import AimassError

log = logging.getLogger("aimass.server")


def error_response(
    request: Request,
    status: int,
    message: str,
    *,
    code: str,
    type_: str,
    param: str | None = None,
    headers: dict | None = None,
) -> JSONResponse:
    if request.url.path.startswith("/v1/"):
        body = {"error": {"message": message, "type": type_, "param": param, "code": code}}
    else:
        body = {"error": message}
    return JSONResponse(body, status_code=status, headers=headers)


def describe_validation(errors: list[dict]) -> tuple[str, str | None]:
    """One readable message (and the first bad field, OpenAI's ``param``) for pydantic errors;
    public so routes that validate a body themselves (to audit a refusal) say the same."""
    parts, first = [], None
    for err in errors[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        first = first or where
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts), first


def render_exception(request: Request, exc: Exception) -> JSONResponse:
    """The answer to any exception a route raises, in the client's protocol's shape.

    Used by the app's exception handlers and by the fast path (``server/fastpath.py``), so a
    route answers the same whichever way it was reached.
    """
    if isinstance(exc, AimassError):
        return error_response(
            request,
            exc.status,
            exc.message,
            code=exc.code,
            type_=exc.type,
            param=exc.param,
            headers=exc.headers,
        )
    if isinstance(exc, RequestValidationError | ValidationError):
        message, param = describe_validation(exc.errors())
        return error_response(
            request, 400, message, code="invalid_input", type_="invalid_request_error", param=param
        )
    if isinstance(exc, HTTPException):
        code = "not_found" if exc.status_code == 404 else "http_error"
        return error_response(
            request,
            exc.status_code,
            str(exc.detail),
            code=code,
            type_="invalid_request_error",
            headers=getattr(exc, "headers", None),
        )
    log.error("unhandled error on %s", request.url.path, exc_info=exc)
    return error_response(
        request,
        500,
        f"internal error: {type(exc).__name__}",
        code="internal_error",
        type_="server_error",
    )


def install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return render_exception(request, exc)

    for kind in (AimassError, RequestValidationError, ValidationError, HTTPException, Exception):
        app.add_exception_handler(kind, handle)
