"""Open Inference Protocol v2 over REST, as Triton, KServe and MLServer serve it.

Thin: metadata and model readiness answer from the engine's state; ``infer`` hands the body
to ``serving.tensors.TensorService`` and writes its answer (JSON, or JSON + binary tensors).
The server's health probes are in ``server/health.py``, statistics in ``statistics.py``.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from aimass import __version__
from aimass.engine.deployment import READY, Deployment
from aimass.errors import Unavailable
from aimass.protocols import v2
from aimass.protocols.v2 import codec
from aimass.refs import parse_version
from aimass.server import body as bodies
from aimass.server.context import call_context, pipeline, visible, watched
from aimass.server.fastpath import fast
from aimass.server.openapi import errors
from aimass.serving.tensors import TensorService

router = APIRouter()

EXTENSIONS = ["model_repository", "binary_tensor_data", "parameters", "statistics"]

_LOOKUP = errors("v2", 400, 403, 404, 429, 503)
"""What asking about a model can answer besides 200: authorized like a call (scope, rate)."""

_READINESS = {
    **_LOOKUP,
    400: {
        "model": v2.ModelReadyResponse | v2.InferenceErrorResponse,
        "description": "The model is not ready (`error` says why), or the version is invalid",
    },
}


@router.get("/v2", response_model=v2.ServerMetadata)
async def server_metadata() -> dict:
    return {"name": "aimass", "version": __version__, "extensions": EXTENSIONS}


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


@router.get("/v2/models/{name}", response_model=v2.ModelMetadata, responses=_LOOKUP)
async def model_metadata(request: Request, name: str) -> dict:
    return _metadata(await _deployment(request, name, None))


@router.get("/v2/models/{name}/versions/{version}", response_model=v2.ModelMetadata,
            responses=_LOOKUP)  # fmt: skip
async def model_version_metadata(request: Request, name: str, version: str) -> dict:
    return _metadata(await _deployment(request, name, version))


@router.get("/v2/models/{name}/ready", response_model=v2.ModelReadyResponse,
            responses=_READINESS)  # fmt: skip
async def model_ready(request: Request, name: str) -> Response:
    return _readiness(name, await _observed(request, name, None))


@router.get("/v2/models/{name}/versions/{version}/ready",
            response_model=v2.ModelReadyResponse, responses=_READINESS)  # fmt: skip
async def model_version_ready(request: Request, name: str, version: str) -> Response:
    return _readiness(name, await _observed(request, name, version))


async def _observed(request: Request, name: str, version: str | None) -> Deployment:
    """The deployment a readiness request asks about, in whatever state it is: the version
    named, or the one a plain name is served by (the newest ready one, else the newest)."""
    try:
        return await _deployment(request, name, version)
    except Unavailable:  # loaded, but no version is ready: say how the newest one is
        versions = [d for d in request.app.state.manager.deployments() if d.spec.name == name]
        if not versions:
            raise
        return versions[-1]


def _readiness(name: str, dep: Deployment) -> Response:
    """200 when ready; otherwise 400 with the reason, as Triton answers (the protocol only
    says "a 4xx status code indicating false")."""
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
    "responses": {
        "200": {
            "description": "The output tensors: JSON, or (binary_data_output) the JSON header "
            "of Inference-Header-Content-Length bytes followed by the binary tensor data",
            "content": {"application/octet-stream": {"schema": {"type": "string"}}},
        }
    },
}

_INFER_ERRORS = errors("v2", 400, 403, 404, 429, 503, 504)


@fast
@router.post("/v2/models/{name}/infer", response_model=v2.InferenceResponse,
             openapi_extra=_INFER_DOC, responses=_INFER_ERRORS)  # fmt: skip
async def infer(request: Request, name: str) -> Response:
    return await _infer(request, name, None)


@fast
@router.post("/v2/models/{name}/versions/{version}/infer",
             response_model=v2.InferenceResponse, openapi_extra=_INFER_DOC,
             responses=_INFER_ERRORS)  # fmt: skip
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


_INDEX_BODY = bodies.openapi_body(v2.RepositoryIndexRequest, required=False)


@router.post("/v2/repository/index", response_model=list[v2.RepositoryModel],
             responses=errors("v2", 400), openapi_extra=_INDEX_BODY)  # fmt: skip
async def repository_index(request: Request) -> list[dict]:
    body = bodies.validate(v2.RepositoryIndexRequest, bodies.loads(await request.body(), empty={}))
    only_ready = bool(body.ready)
    entries = await request.app.state.control.index()
    return [
        e
        for e in entries
        if visible(request, e["name"]) and (not only_ready or e["state"] == "READY")
    ]
