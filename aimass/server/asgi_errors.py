"""Error answers sent straight from ASGI middleware, before any route (and its handlers) runs.

Middleware such as authentication and the body-size limit answers outside FastAPI's exception
handlers, so it renders ``AimassError`` itself, in the same shapes as the app's handler:
OpenAI's ``{"error": {"message", "type", "param", "code"}}`` everywhere except ``/v2``, where
the Open Inference Protocol's ``{"error": "..."}`` applies.
"""

from __future__ import annotations

import json

from aimass.errors import AimassError


def error_body(path: str, err: AimassError) -> dict:
    if path.startswith("/v2"):
        return {"error": err.message}
    return {
        "error": {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
    }


async def send_error(scope: dict, send, err: AimassError) -> None:
    """Answer the request with ``err`` (status, protocol-shaped body, its headers)."""
    body = json.dumps(error_body(scope.get("path", ""), err)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.lower().encode(), str(v).encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
