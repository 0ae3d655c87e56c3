"""The server application: routers, services, middleware and the fast path, assembled once.

The ASGI app ``aimass serve`` runs is::

    AccessMiddleware → BodyLimitMiddleware → FastPath ─┬─ @fast routes, called directly
                                                       └─ the FastAPI app (every other route)

``MIDDLEWARE`` is the only place middleware is added: it wraps the dispatcher, so the fast
routes and FastAPI's routes pass through the same guards by construction (the FastAPI app
itself has no middleware; ``tests/unit/test_app_routes.py`` checks both).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from aimass import __version__
from aimass.access.gate import Gate
from aimass.config import Settings
from aimass.control import ControlPlane
from aimass.files.storage import LocalFileStorage
from aimass.files.store import FileStore
from aimass.jobs.batch.kind import BatchKind
from aimass.jobs.batch.lines import LineSender
from aimass.jobs.batch.service import BatchService
from aimass.jobs.finetune.kind import FineTuneKind
from aimass.jobs.finetune.service import FineTuningService
from aimass.jobs.forecast_train import ForecastTrainKind
from aimass.jobs.recommend_train import RecommendTrainKind
from aimass.jobs.risk_train import RiskTrainKind
from aimass.jobs.runner import JobRunner
from aimass.jobs.service import JobsService
from aimass.server import health
from aimass.server.admin import access as admin_access
from aimass.server.admin import models as admin_models
from aimass.server.admin import routing as admin_routing
from aimass.server.auth import AccessMiddleware
from aimass.server.errors import install_error_handlers
from aimass.server.fastpath import FastPath
from aimass.server.limits import BodyLimitMiddleware
from aimass.server.openai import (
    audio,
    batches,
    completions,
    embeddings,
    files,
    fine_tuning,
    forecasts,
    images,
    jobs,
    ocr,
    recommendations,
    risk,
    vector_stores,
)
from aimass.server.openapi import install as install_openapi
from aimass.server.ui import pages as ui_pages
from aimass.server.ui.history import MetricsHistory
from aimass.server.ui.middleware import ConsoleMiddleware
from aimass.server.ui.sessions import store_of
from aimass.server.v2 import routes as v2_routes
from aimass.server.v2 import statistics as v2_statistics
from aimass.serving.audio import AudioService
from aimass.serving.embeddings import EmbeddingsService
from aimass.serving.files import FilesService
from aimass.serving.forecasts import ForecastService
from aimass.serving.llm import LLMService
from aimass.serving.ocr import OcrService
from aimass.serving.pipeline import Pipeline
from aimass.serving.recommendations import RecommendationService
from aimass.serving.risk import RiskService
from aimass.serving.tensors import TensorService
from aimass.serving.vector_stores import VectorStoreService
from aimass.serving.vision import VisionService

log = logging.getLogger("aimass.server")

# v2_statistics before v2_routes: /v2/models/stats is matched before /v2/models/{name}
ROUTERS = [
    health,
    v2_statistics,
    v2_routes,
    admin_models,
    admin_routing,
    completions,
    embeddings,
    images,
    ocr,
    audio,
    files,
    vector_stores,
    batches,
    fine_tuning,
    jobs,
    recommendations,
    forecasts,
    risk,
    admin_access,
    ui_pages,
]

Middleware = Callable[[ASGIApp, FastAPI], ASGIApp]

MIDDLEWARE: list[Middleware] = [
    # outermost first: the console's session becomes the key the access middleware checks
    lambda inner, app: ConsoleMiddleware(inner, sessions=store_of(app.state), gate=app.state.gate),
    # a request without a valid key is refused before its body is read
    lambda inner, app: AccessMiddleware(inner, gate=app.state.gate),
    lambda inner, app: BodyLimitMiddleware(
        inner,
        max_body_bytes=app.state.settings.max_body_bytes,
        streamed={"max_file_bytes": app.state.settings.max_file_bytes},
    ),
]


def create_app(settings: Settings | None = None) -> ASGIApp:
    """The ASGI app ``aimass serve`` runs (see the module note)."""
    app = fastapi_app(settings or Settings())
    return wrap(app, FastPath(app))


def wrap(app: FastAPI, inner: ASGIApp) -> ASGIApp:
    """``inner`` inside every middleware of ``MIDDLEWARE``, outermost first."""
    for middleware in reversed(MIDDLEWARE):
        inner = middleware(inner, app)
    return inner


def fastapi_app(settings: Settings) -> FastAPI:
    """Every route, the services behind them and the lifespan (control plane start and stop)."""
    control = ControlPlane(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        await control.start()
        await app.state.files.start()
        await app.state.vector_stores.start()
        await app.state.runner.start()
        app.state.metrics_history.ensure_started()
        await app.state.risk.start()
        # Everything built so far lives as long as the server: out of the collector's
        # sight, a full collection scans only what requests made (100-400 ms otherwise,
        # every ~15 s under load: the tail of every route's latency; benchmarks/bench_risk.py).
        gc.freeze()
        try:
            yield
        finally:
            await app.state.risk.stop()
            await app.state.metrics_history.stop()
            await app.state.runner.stop()
            await app.state.vector_stores.stop()
            await app.state.files.stop()
            await control.stop()

    app = FastAPI(title="AI Mass", version=__version__, lifespan=lifespan)
    gate = Gate(settings)
    pipeline = Pipeline(control.manager, gate)
    state = app.state
    state.settings, state.control, state.manager, state.gate = (
        settings,
        control,
        control.manager,
        gate,
    )
    state.pipeline = pipeline
    file_store = FileStore(
        settings.resolved_database_url,
        LocalFileStorage(settings.home / "files"),
        settings.max_file_bytes,
    )
    state.tensors = TensorService(pipeline)
    state.embeddings = EmbeddingsService(pipeline, settings)
    state.llm = LLMService(pipeline, settings)
    state.vision = VisionService(pipeline, settings)
    state.ocr = OcrService(pipeline)
    state.audio = AudioService(pipeline)
    state.files = FilesService(file_store, gate)
    state.vector_stores = VectorStoreService(
        pipeline, state.embeddings, settings, file_store, state.vision, state.ocr
    )
    sender = LineSender(state.embeddings, state.llm, state.tensors)
    batch = BatchKind(pipeline, sender, file_store, settings)
    fine_tune = FineTuneKind(pipeline, file_store, settings)
    recommend_train = RecommendTrainKind(file_store, settings)
    forecast_train = ForecastTrainKind(file_store, settings)
    risk_train = RiskTrainKind(file_store, settings)
    kinds = [batch, fine_tune, recommend_train, forecast_train, risk_train]
    state.runner = JobRunner(settings, kinds, ready=control.ready)
    state.forecasts = ForecastService(pipeline, settings)
    state.recommendations = RecommendationService(pipeline, settings)
    state.risk = RiskService(pipeline, settings)
    state.batches = BatchService(state.runner, state.files, settings)
    state.fine_tuning = FineTuningService(state.runner, state.files, pipeline)
    state.jobs = JobsService(state.runner, state.files)
    state.metrics_history = MetricsHistory()
    install_error_handlers(app)
    for routes in ROUTERS:
        app.include_router(routes.router)
    install_openapi(app)
    app.mount("/ui/static", StaticFiles(packages=[("aimass.server.ui", "static")]), "ui-static")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
