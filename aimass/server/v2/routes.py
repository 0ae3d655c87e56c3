"""Open Inference Protocol v2 over REST, as Triton, KServe and MLServer serve it.

Thin: health and metadata answer from the engine's state; ``infer`` hands the body to
``serving.tensors.TensorService`` and writes its answer (JSON, or JSON + binary tensors).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from aimass import __version__
from aimass.engine.deployment import READY, Deployment
from aimass.protocols import v2
from aimass.protocols.v2 import codec
from aimass.refs import parse_version
from aimass.server import body as bodies
from aimass.server.context import call_context, pipeline, visible, watched
from aimass.server.fastpath import fast
from aimass.serving.tensors import TensorService

router = APIRouter()

EXTENSIONS = ["model_repository", "binary_tensor_data", "parameters", "statistics"]


@router.get("/v2", response_model=v2.ServerMetadata)
async def server_metadata() -> dict:
    return {"name": "aimass", "version": __version__, "extensions": EXTENSIONS}


@router.get("/v2/health/live")
async def live() -> dict:
    return {"live": True}


@router.get("/v2/health/ready")
async def ready(request: Request) -> Response:
    ok = request.app.state.control.ready()
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


async def _deployment(request: Request, name: str, version: str | None) -> Deployment:
    """The deployment a metadata or readiness request names, if the caller may use it."""
    return await pipeline(request).resolve(call_context(request), name, parse_version(version))


def _metadata(dep: Deployment) -> dict:
    spec = dep.spec
    return {
        "name": spec.name,
        "versions": [str(spec.version)],
        "platform": spec.runtime,
        "inputs": dep.info.get("inputs", []),
        "outputs": dep.info.get("outputs", []),
        "parameters": {"task": spec.task, **_runtime_details(dep.info), **dep.describe()},
    }


def _runtime_details(info: dict) -> dict:
    """What the runtime says about itself (labels, dimensions, context size...)."""
    return {k: v for k, v in info.items() if k not in ("inputs", "outputs", "pid")}


@router.get("/v2/models/{name}", response_model=v2.ModelMetadata)
async def model_metadata(request: Request, name: str) -> dict:
    return _metadata(await _deployment(request, name, None))


@router.get("/v2/models/{name}/versions/{version}", response_model=v2.ModelMetadata)
async def model_version_metadata(request: Request, name: str, version: str) -> dict:
    return _metadata(await _deployment(request, name, version))


@router.get("/v2/models/{name}/ready")
async def model_ready(request: Request, name: str) -> Response:
    return _readiness(name, await _deployment(request, name, None))


@router.get("/v2/models/{name}/versions/{version}/ready")
async def model_version_ready(request: Request, name: str, version: str) -> Response:
    return _readiness(name, await _deployment(request, name, version))


def _readiness(name: str, dep: Deployment) -> Response:
    body = {"name": name, "ready": dep.state == READY}
    if dep.state != READY:
        body["error"] = f"model {name!r} is {dep.state}" + (
            f": {dep.last_error}" if dep.last_error else ""
        )
    return JSONResponse(body, status_code=200 if dep.state == READY else 400)


def _tensors(request: Request) -> TensorService:
    return request.app.state.tensors


_INFER_DOC = {
    **bodies.openapi_body(v2.InferenceRequest),
    "responses": {"200": {"description": "The output tensors (JSON, or JSON + binary data)"}},
}


@fast
@router.post("/v2/models/{name}/infer", response_model=v2.InferenceResponse,
             openapi_extra=_INFER_DOC)  # fmt: skip
async def infer(request: Request, name: str) -> Response:
    return await _infer(request, name, None)


@fast
@router.post("/v2/models/{name}/versions/{version}/infer",
             response_model=v2.InferenceResponse, openapi_extra=_INFER_DOC)  # fmt: skip
async def infer_version(request: Request, name: str, version: str) -> Response:
    return await _infer(request, name, version)


async def _infer(request: Request, name: str, version: str | None) -> Response:
    service = _tensors(request)
    call = await service.open(call_context(request), name, parse_version(version))
    try:
        body = await request.body()
    except BaseException as exc:
        raise call.finish(exc) from None
    work = service.infer(call, body, request.headers.get(codec.HEADER))
    return await watched(request, _respond(work))


async def _respond(work) -> Response:
    answer = await work
    if not answer.binary:
        return Response(answer.head, media_type="application/json")
    return Response(
        answer.head + answer.binary,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(answer.head))},
    )


@router.post("/v2/repository/index", response_model=list[v2.RepositoryModel],
             openapi_extra=bodies.openapi_body(v2.RepositoryIndexRequest))  # fmt: skip
async def repository_index(request: Request) -> list[dict]:
    raw = bodies.loads(await request.body(), empty={})
    only_ready = bool(raw.get("ready", False)) if isinstance(raw, dict) else False
    entries = await request.app.state.control.index()
    return [
        e
        for e in entries
        if visible(request, e["name"]) and (not only_ready or e["state"] == "READY")
    ]
