"""Triton's statistics extension: ``GET /v2/models[/{name}[/versions/{v}]]/stats``.

Each loaded version's ``InferenceStats`` (kept by its deployment, see ``aimass.metrics``) in
Triton's JSON shape, so ``tritonclient``'s ``get_inference_statistics`` reads them: success and
fail counts with their cumulative time, queue and compute time, inference and execution counts,
the last inference, and compute time per batch size. The figures live as long as the loaded
version; ``/metrics`` has the same measurements as Prometheus series.

``/v2/models/stats`` (every model the caller may use) is routed before the model metadata
route ``/v2/models/{name}``, as in Triton, so ``stats`` is not a model name here.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from aimass.engine.deployment import Deployment
from aimass.errors import Unavailable
from aimass.metrics import Duration, InferenceStats
from aimass.protocols.v2 import ModelStatisticsResponse
from aimass.refs import parse_version
from aimass.server.context import call_context, pipeline, visible
from aimass.server.openapi import errors

router = APIRouter()

_NOT_MEASURED = Duration().as_dict()
"""``compute_input`` and ``compute_output`` (a batch on its replica is timed as one span,
``compute_infer``) and ``cache_hit`` / ``cache_miss`` (there is no response cache)."""


@router.get("/v2/models/stats", response_model=ModelStatisticsResponse)
async def all_stats(request: Request) -> dict:
    deployments = request.app.state.manager.deployments()
    return _answer([d for d in deployments if visible(request, d.spec.name)])


@router.get("/v2/models/{name}/stats", response_model=ModelStatisticsResponse,
            responses=errors("v2", 400, 403, 404, 429))  # fmt: skip
async def model_stats(request: Request, name: str) -> dict:
    return _answer(await _versions(request, name, None))


@router.get("/v2/models/{name}/versions/{version}/stats",
            response_model=ModelStatisticsResponse,
            responses=errors("v2", 400, 403, 404, 429))  # fmt: skip
async def model_version_stats(request: Request, name: str, version: str) -> dict:
    return _answer(await _versions(request, name, version))


async def _versions(request: Request, name: str, version: str | None) -> list[Deployment]:
    """The loaded versions of ``name`` (or the one named), if the caller may use the model;
    404 when none is loaded. Versions that are loading or failed have statistics too."""
    number = parse_version(version)
    try:
        found = await pipeline(request).resolve(call_context(request), name, number)
    except Unavailable:  # loaded, but no version is ready
        found = None
    if number is not None and found is not None:
        return [found]
    return [d for d in request.app.state.manager.deployments() if d.spec.name == name]


def _answer(deployments: list[Deployment]) -> dict:
    return {"model_stats": [_model_stats(d) for d in deployments]}


def _model_stats(dep: Deployment) -> dict:
    stats: InferenceStats = dep.stats
    return {
        "name": dep.spec.name,
        "version": str(dep.spec.version),
        "last_inference": stats.last_inference_ms,
        "inference_count": stats.inference_count,
        "execution_count": stats.execution_count,
        "inference_stats": {
            "success": stats.success.as_dict(),
            "fail": stats.fail.as_dict(),
            "queue": stats.queue.as_dict(),
            "compute_input": _NOT_MEASURED,
            "compute_infer": stats.compute_infer.as_dict(),
            "compute_output": _NOT_MEASURED,
            "cache_hit": _NOT_MEASURED,
            "cache_miss": _NOT_MEASURED,
        },
        "batch_stats": [
            {
                "batch_size": rows,
                "compute_input": _NOT_MEASURED,
                "compute_infer": took.as_dict(),
                "compute_output": _NOT_MEASURED,
            }
            for rows, took in sorted(stats.batches.items())
        ],
    }
