"""Request body size limit (``max_body_bytes``): 413 before a large body is read.

A declared ``Content-Length`` over the limit is refused at once. A body without one (chunked)
is read up to the limit and then replayed to the app, or refused as soon as it passes the
limit, so memory stays bounded either way. Upload routes (``STREAMED``: ``POST /v1/files``)
have their own, larger limit and are never buffered: a declared length over it is refused at
once, and the body is counted as the route reads it, which fails with a 413 as soon as it
passes. Items per request and the ``max_tokens`` ceiling
are checked by the routes that understand the payload (settings ``max_items_per_request``,
``max_tokens_ceiling``).
"""

from __future__ import annotations

from aimass.errors import PayloadTooLarge
from aimass.server.errors import send_error

FORM_OVERHEAD_BYTES = 1024 * 1024
"""Room an upload's body has beyond its file: multipart headers and the other form fields."""
STREAMED = {("POST", "/v1/files"): "max_file_bytes"}
"""Routes that stream their body (method, path) and the setting that limits them."""


def too_large(limit: int, setting: str = "max_body_bytes") -> PayloadTooLarge:
    return PayloadTooLarge(f"request body is larger than {setting} ({limit} bytes)", param=setting)


class BodyLimitMiddleware:
    """Pure ASGI middleware (no per-request task or copy when the body is within the limit)."""

    def __init__(self, app, max_body_bytes: int, streamed: dict[str, int] | None = None) -> None:
        """``streamed``: the limit of each setting named in ``STREAMED`` (bytes)."""
        self.app = app
        self.limit = max_body_bytes
        self.streamed = streamed or {}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        setting = STREAMED.get((scope.get("method"), scope.get("path")))
        if setting in self.streamed:
            await self._streamed(scope, receive, send, setting, self.streamed[setting])
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

    async def _streamed(self, scope, receive, send, setting: str, limit: int) -> None:
        """The route reads the body itself; its size is checked as it goes (the file part
        itself is held to ``limit`` exactly by the route: this allows for the form around it)."""
        cap = limit + FORM_OVERHEAD_BYTES
        length = _content_length(scope)
        if length is not None and length > cap:
            await send_error(scope, send, too_large(limit, setting))
            return
        size = 0

        async def counted():
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            if size > cap:
                raise too_large(limit, setting)
            return message

        await self.app(scope, counted, send)


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
