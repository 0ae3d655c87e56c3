"""The inference routes, dispatched without FastAPI's per-request machinery.

Under load, a small embeddings request spent about 60% of the server's CPU in FastAPI's and
Starlette's routing, exception wrappers and middleware shims, against 27% in the route
itself (py-spy during ``benchmarks/bench_embeddings.py``). The routes that carry inference
traffic are matched here by method and path and called directly: the same route
functions, behind the same guards (authentication, body limit), with errors rendered by the
same function as the app's handlers. Everything else, including the OpenAPI description of
these routes, stays with FastAPI.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from aimass.server.errors import render_exception

Route = Callable[[Request], Awaitable[Response]]
_ROUTE_KEY = "aimass.route"


class FastPath:
    """ASGI app: POSTs to ``routes`` go straight to their function, the rest to ``app``.

    ``guard`` wraps the direct endpoint in the middleware every request must pass (the app's
    own middleware stack is not on this path). Route patterns name their path parameters
    (``(?P<name>[^/]+)``), which the route reads from ``request.path_params``.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: list[tuple[str, Route]],
        guard: Callable[[ASGIApp], ASGIApp],
    ) -> None:
        self.app = app
        self._routes = [(re.compile(pattern), route) for pattern, route in routes]
        self._guarded = guard(self._endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for pattern, route in self._routes:
                match = pattern.fullmatch(scope["path"])
                if match is not None:
                    scope["app"] = self.app  # request.app.state, as under FastAPI
                    scope["path_params"] = match.groupdict()
                    scope[_ROUTE_KEY] = route
                    await self._guarded(scope, receive, send)
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _endpoint(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await scope[_ROUTE_KEY](request)
        except Exception as exc:  # rendered like the app's handlers; nothing reaches uvicorn
            response = render_exception(request, exc)
        await response(scope, receive, send)
