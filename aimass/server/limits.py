"""Request body size limit (``max_body_bytes``): 413 before a large body is read.

A declared ``Content-Length`` over the limit is refused at once. A body without one (chunked)
is read up to the limit and then replayed to the app, or refused as soon as it passes the
limit, so memory stays bounded either way. Items per request and the ``max_tokens`` ceiling
are checked by the routes that understand the payload (settings ``max_items_per_request``,
``max_tokens_ceiling``).
"""

from __future__ import annotations

from aimass.errors import PayloadTooLarge
from aimass.server.errors import send_error


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"request body is larger than max_body_bytes ({limit} bytes)", param="max_body_bytes"
    )


class BodyLimitMiddleware:
    """Pure ASGI middleware (no per-request task or copy when the body is within the limit)."""

    def __init__(self, app, max_body_bytes: int) -> None:
        self.app = app
        self.limit = max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None:
            if length > self.limit:
                await send_error(scope, send, too_large(self.limit))
                return
            await self.app(scope, receive, send)
            return
        if not _may_have_body(scope):
            await self.app(scope, receive, send)
            return
        chunks = await _read_capped(receive, self.limit)
        if chunks is None:
            await send_error(scope, send, too_large(self.limit))
            return
        await self.app(scope, _replay(chunks, receive), send)


def _content_length(scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _may_have_body(scope) -> bool:
    if scope.get("method") in ("GET", "HEAD", "OPTIONS", "DELETE"):
        return any(name == b"transfer-encoding" for name, _ in scope.get("headers", ()))
    return True


async def _read_capped(receive, limit: int) -> list[dict] | None:
    """Receive the whole body, or None as soon as it passes ``limit``."""
    messages, size = [], 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages
        size += len(message.get("body", b""))
        if size > limit:
            return None
        if not message.get("more_body", False):
            return messages


def _replay(messages: list[dict], receive):
    pending = list(messages)

    async def replay_receive():
        if pending:
            return pending.pop(0)
        return await receive()

    return replay_receive
