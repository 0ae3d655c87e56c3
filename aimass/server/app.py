"""The server application: the FastAPI app (control plane, routers, error rendering, metrics)
with its inference routes served on the fast path (``fastpath.py``)."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp

from aimass import __version__
from aimass.config import Settings
from aimass.control import ControlPlane
from aimass.server import auth, limits
from aimass.server.admin import access as routes_access
from aimass.server.admin import models as routes_admin
from aimass.server.errors import install_error_handlers
from aimass.server.fastpath import FastPath
from aimass.server.openai import completions as routes_openai
from aimass.server.openai import embeddings as routes_embeddings
from aimass.server.v2 import routes as routes_v2

log = logging.getLogger("aimass.server")


# The routes that carry inference traffic, taken off FastAPI's per-request machinery.
HOT_ROUTES = [
    (r"/v2/models/(?P<name>[^/]+)/infer", routes_v2.infer),
    (r"/v2/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/infer", routes_v2.infer),
    (r"/v1/embeddings", routes_embeddings.embeddings),
    (r"/v1/rerank", routes_embeddings.rerank),
    (r"/v1/completions", routes_openai.completions),
    (r"/v1/chat/completions", routes_openai.chat_completions),
]


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The ASGI app ``aimass serve`` runs: ``fastapi_app`` behind the fast path."""
    settings = settings or Settings()
    app = fastapi_app(settings)

    def guard(endpoint: ASGIApp) -> ASGIApp:
        # The app's own guards, in the same order (authentication outermost).
        inner = limits.BodyLimitMiddleware(endpoint, max_body_bytes=settings.max_body_bytes)
        return auth.AccessMiddleware(inner, gate=app.state.gate)

    return FastPath(app, HOT_ROUTES, guard)


def fastapi_app(settings: Settings) -> FastAPI:
    """Every route, the middleware and the lifespan (control plane start and stop)."""
    control = ControlPlane(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await control.start()
        try:
            yield
        finally:
            await control.stop()

    app = FastAPI(title="AI Mass", version=__version__, lifespan=lifespan)
    app.state.settings = settings
    app.state.control = control
    app.state.manager = control.manager
    install_error_handlers(app)
    _install_access_control(app, settings)
    for routes in (routes_v2, routes_admin, routes_openai, routes_embeddings, routes_access):
        app.include_router(routes.router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app


def _install_access_control(app: FastAPI, settings: Settings) -> None:
    limits.install_body_limit(app, settings)
    auth.install_access_control(app, settings)
