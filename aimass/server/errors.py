"""Renders every error once, in the shape of the protocol the client speaks.

The Open Inference Protocol's ``{"error": "..."}`` under ``/v2``; OpenAI's
``{"error": {"message", "type", "param", "code"}}`` everywhere else. Route handlers, the fast
path and the ASGI middleware (which answers before any route runs: authentication, body size)
all render through ``error_body``, so an error reads the same whichever layer raised it.
"""

from __future__ import annotations

import logging

import orjson
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope, Send

from aimass.errors import AimassError, InvalidInput
from aimass.server.body import describe_validation
from aimass.server.routing import allowed_methods

log = logging.getLogger("aimass.server")


class _HTTPError(AimassError):
    """A Starlette HTTPException (404 for an unknown path, 405...) in our error shape."""

    type = "invalid_request_error"


def error_body(path: str, err: AimassError) -> dict:
    if path.startswith("/v2"):
        return {"error": err.message}
    return {
        "error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
    }


def as_aimass_error(exc: Exception, path: str) -> AimassError:
    """Any exception a route may raise, as the ``AimassError`` the client will read."""
    if isinstance(exc, AimassError):
        return exc
    if isinstance(exc, RequestValidationError | ValidationError):
        message, param = describe_validation(exc.errors())
        return InvalidInput(message, param=param)
    if isinstance(exc, HTTPException):
        err = _HTTPError(str(exc.detail), headers=getattr(exc, "headers", None) or {})
        err.status = exc.status_code
        err.code = "not_found" if exc.status_code == 404 else "http_error"
        return err
    log.error("unhandled error on %s", path, exc_info=exc)
    err = AimassError(f"internal error: {type(exc).__name__}")
    err.status, err.code, err.type = 500, "internal_error", "server_error"
    return err


def render_exception(request: Request, exc: Exception) -> Response:
    """The answer to any exception a route raises, in the client's protocol's shape."""
    err = as_aimass_error(exc, request.url.path)
    if err.status == 405:  # every method served at the path, not only the first route's
        err.headers["Allow"] = ", ".join(allowed_methods(request.app, request.scope))
    return Response(
        orjson.dumps(error_body(request.url.path, err)),
        status_code=err.status,
        headers=err.headers or None,
        media_type="application/json",
    )


async def send_error(scope: Scope, send: Send, err: AimassError) -> None:
    """Answer from ASGI middleware with ``err`` (status, protocol-shaped body, its headers)."""
    body = orjson.dumps(error_body(scope.get("path", ""), err))
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def install_error_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        return render_exception(request, exc)

    for kind in (AimassError, RequestValidationError, ValidationError, HTTPException, Exception):
        app.add_exception_handler(kind, handle)
