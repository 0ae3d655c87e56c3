"""What a route takes from HTTP before it hands over to a service: the call context.

Routes are thin: they parse the body (``server/body.py``), build a ``CallContext`` here (the
caller the access middleware found, the client's ``Request-Timeout``), and await a service of
``aimass.serving`` under ``watched`` (a client that leaves cancels its work). Everything a call
goes through (authorization, admission, deadline, usage) happens in the service's pipeline;
errors are rendered by ``server/errors.py``. Admin routes use ``require_admin`` and ``audited``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from aimass.access.gate import Gate
from aimass.server.auth import caller_of
from aimass.server.disconnect import ClientDisconnected, unless_disconnected
from aimass.server.timeouts import request_timeout_s
from aimass.serving.pipeline import CallContext, Pipeline

T = TypeVar("T")

CLIENT_CLOSED = 499
"""nginx's status for a request whose client left; only logs and metrics ever see it."""


def call_context(request: Request, timeout_s: float | None = None) -> CallContext:
    """The caller and deadline of ``request``; ``timeout_s`` overrides ``Request-Timeout``
    (v2's own ``timeout`` parameter)."""
    if timeout_s is None:
        timeout_s = request_timeout_s(request)
    return CallContext(caller_of(request), timeout_s)


def pipeline(request: Request) -> Pipeline:
    return request.app.state.pipeline


def gate(request: Request) -> Gate:
    return request.app.state.gate


async def watched(request: Request, work: Awaitable[Response]) -> Response:
    """Await the route's work; a client that leaves cancels it and gets (logs) a 499."""
    try:
        return await unless_disconnected(request, work)
    except ClientDisconnected:
        return Response(status_code=CLIENT_CLOSED)


def visible(request: Request, model: str) -> bool:
    """Whether the caller may see ``model`` in listings (always, when auth is off)."""
    return gate(request).may_use(caller_of(request), model)


async def require_admin(request: Request) -> None:
    """Raise AdminRequired unless the caller holds an admin key (or auth is off)."""
    await gate(request).require_admin(caller_of(request), f"{request.method} {request.url.path}")


def audited(
    request: Request, action: str, target: str | Callable[[], str]
) -> contextlib.AbstractAsyncContextManager[None]:
    """Run an admin action and append it to the audit log with its result."""
    return gate(request).audited(caller_of(request), action, target)


async def admin_action(
    request: Request, action: str, target: str | Callable[[], str], work: Awaitable[T]
) -> T:
    """``require_admin``, then ``work`` audited as ``action`` on ``target``."""
    await require_admin(request)
    async with audited(request, action, target):
        return await work
