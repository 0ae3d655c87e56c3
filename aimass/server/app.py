"""The FastAPI application: wires the control plane, routers, error rendering and metrics."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from aimass import __version__
from aimass.config import Settings
from aimass.control import ControlPlane
from aimass.server import (
    routes_access,
    routes_admin,
    routes_embeddings,
    routes_openai,
    routes_v2,
)
from aimass.server.errors import install_error_handlers

log = logging.getLogger("aimass.server")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
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
    from aimass.server import auth, limits

    limits.install_body_limit(app, settings)
    auth.install_access_control(app, settings)
