"""HTTP side of access control: the middleware that authenticates every request.

The rules themselves (keys, scopes, limits, usage, audit) live in ``aimass.access.gate`` and
know nothing of HTTP. This middleware finds the ``Caller`` of each request (401 in the
protocol's shape when a key is required and missing or bad), keeps it in the ASGI scope for the
routes (``caller_of``), adds the ``x-ratelimit-*`` headers the gate computed, and runs the
gate's start/stop with the app's lifespan.
"""

from __future__ import annotations

from starlette.requests import Request

from aimass.access.gate import Caller, Gate
from aimass.errors import AimassError
from aimass.server.errors import send_error

PUBLIC_PATHS = frozenset(
    {"/v2/health/live", "/v2/health/ready", "/health", "/healthz", "/ui/login"}
)
"""Liveness/readiness probes and the console's sign-in page answer without a key; everything
else (``/metrics`` included) needs one when auth is on."""
PUBLIC_PREFIXES = ("/ui/static/",)
"""The console's scripts and styles: the sign-in page needs them before there is a key."""

_SCOPE_KEY = "aimass_caller"


def caller_of(request: Request) -> Caller:
    """The caller the middleware found (anonymous when no gate is installed)."""
    caller = request.scope.get("state", {}).get(_SCOPE_KEY)
    if caller is None:
        caller = Caller(None, request.client.host if request.client else "")
        request.scope.setdefault("state", {})[_SCOPE_KEY] = caller
    return caller


class AccessMiddleware:
    """Authenticates every HTTP request, adds ``x-ratelimit-*`` headers, and runs the gate's
    start/stop with the app's lifespan."""

    def __init__(self, app, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if kind not in ("http", "websocket") or _public(scope["path"]):
            await self.app(scope, receive, send)
            return
        if not self.gate.started:
            await self.gate.start()
        client = scope.get("client")
        try:
            caller = await self.gate.authenticate(scope["headers"], client[0] if client else "")
        except AimassError as err:
            if kind == "websocket":  # refuse the handshake (policy violation)
                await send({"type": "websocket.close", "code": 1008})
            else:
                await send_error(scope, send, err)
            return
        scope.setdefault("state", {})[_SCOPE_KEY] = caller
        key = caller.key
        if key is not None and (key.rpm or key.tpm or key.budget_tokens):
            send = _with_rate_headers(send, caller)
        await self.app(scope, receive, send)

    def _lifespan_send(self, send):
        async def wrapped(message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await self.gate.start()
            elif message["type"] == "lifespan.shutdown.complete":
                await self.gate.stop()
            await send(message)

        return wrapped


def _public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def _with_rate_headers(send, caller: Caller):
    async def wrapped(message) -> None:
        if message["type"] == "http.response.start" and caller.rate_headers:
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [
                (k.encode(), v.encode())
                for k, v in caller.rate_headers.items()
                if k.encode() not in present
            ]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped
