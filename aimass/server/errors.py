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


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AimassError)
    async def _aimass(request: Request, exc: AimassError):
        return error_response(
            request,
            exc.status,
            exc.message,
            code=exc.code,
            type_=exc.type,
            param=exc.param,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        message, param = describe_validation(exc.errors())
        return error_response(
            request, 400, message, code="invalid_input", type_="invalid_request_error", param=param
        )

    @app.exception_handler(ValidationError)
    async def _pydantic(request: Request, exc: ValidationError):
        message, param = describe_validation(exc.errors())
        return error_response(
            request, 400, message, code="invalid_input", type_="invalid_request_error", param=param
        )

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        code = "not_found" if exc.status_code == 404 else "http_error"
        return error_response(
            request,
            exc.status_code,
            str(exc.detail),
            code=code,
            type_="invalid_request_error",
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s", request.url.path)
        return error_response(
            request,
            500,
            f"internal error: {type(exc).__name__}",
            code="internal_error",
            type_="server_error",
        )
