"""The inference routes, dispatched without FastAPI's per-request machinery.

Under load, a small embeddings request spent about 60% of the server's CPU in FastAPI's and
Starlette's routing, exception wrappers and middleware shims, against 27% in the route
itself (py-spy during ``benchmarks/bench_embeddings.py``). Routes marked ``@fast`` are
matched here, with the path pattern FastAPI compiled for them, and called directly; errors are
rendered by the same function as the app's handlers. Nothing is declared twice: the routes,
their path parameters and the OpenAPI description all come from the FastAPI app, and the
middleware wraps this whole dispatcher (``server/app.py``), so it runs for both paths alike.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from aimass.server.errors import render_exception
from aimass.server.routing import all_routes

Endpoint = Callable[..., Awaitable[Response]]
_FAST = "__aimass_fast__"


def fast(endpoint: Endpoint) -> Endpoint:
    """Mark a route's endpoint for the fast path (put it above the router decorator).

    Such an endpoint takes the ``Request`` and its path parameters as strings, parses its body
    itself and returns a ``Response``: nothing FastAPI would resolve per request."""
    setattr(endpoint, _FAST, True)
    return endpoint


def fast_routes(app: FastAPI) -> list[APIRoute]:
    """The app's routes whose endpoints are marked ``@fast``."""
    return [
        r for r in all_routes(app) if isinstance(r, APIRoute) and getattr(r.endpoint, _FAST, False)
    ]


class FastPath:
    """ASGI app: requests for ``@fast`` routes go straight to their endpoint, the rest to
    ``app``. Requests are otherwise untouched: the middleware sits outside this dispatcher."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.routes = [
            (route.path_regex, route.methods, route.endpoint) for route in fast_routes(app)
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for pattern, methods, endpoint in self.routes:
                if scope["method"] not in methods:
                    continue
                match = pattern.match(scope["path"])
                if match is not None:
                    await self._call(endpoint, match.groupdict(), scope, receive, send)
                    return
        await self.app(scope, receive, send)

    async def _call(
        self, endpoint: Endpoint, params: dict[str, Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        scope["app"] = self.app  # request.app.state, as under FastAPI
        scope["path_params"] = params
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request, **params)
        except Exception as exc:  # rendered like the app's handlers; nothing reaches uvicorn
            response = render_exception(request, exc)
        await response(scope, receive, send)
