"""Open Inference Protocol v2 over REST, as Triton, KServe and MLServer serve it.

Thin: decode and check tensors, hand them to the engine, encode the answer.
"""

from __future__ import annotations

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from aimass import __version__
from aimass.engine.deployment import READY, Deployment
from aimass.errors import AimassError, InvalidInput
from aimass.protocols.v2 import InferenceRequest
from aimass.protocols.v2 import codec as v2_codec
from aimass.server.deps import (
    check_model_access,
    manager,
    record_refusal,
    record_usage,
    visible,
)
from aimass.server.disconnect import ClientDisconnected, unless_disconnected
from aimass.server.timeouts import request_timeout_s

router = APIRouter()

EXTENSIONS = ["model_repository", "binary_tensor_data", "parameters", "statistics"]


@router.get("/v2")
async def server_metadata() -> dict:
    return {"name": "aimass", "version": __version__, "extensions": EXTENSIONS}


@router.get("/v2/health/live")
async def live() -> dict:
    return {"live": True}


@router.get("/v2/health/ready")
async def ready(request: Request) -> Response:
    ok = request.app.state.control.ready()
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


def _deployment(request: Request, name: str, version: str | None) -> Deployment:
    return manager(request).get(name, _version(version))


def _version(version: str | None) -> int | None:
    if version is None or version == "":
        return None
    if not (version.isascii() and version.isdigit()) or int(version) < 1:
        raise InvalidInput(f"model version must be a positive integer, got {version!r}")
    return int(version)


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


@router.get("/v2/models/{name}")
@router.get("/v2/models/{name}/versions/{version}")
async def model_metadata(request: Request, name: str, version: str | None = None) -> dict:
    await check_model_access(request, name)
    return _metadata(_deployment(request, name, version))


@router.get("/v2/models/{name}/ready")
@router.get("/v2/models/{name}/versions/{version}/ready")
async def model_ready(request: Request, name: str, version: str | None = None) -> Response:
    await check_model_access(request, name)
    dep = _deployment(request, name, version)
    body = {"name": name, "ready": dep.state == READY}
    if dep.state != READY:
        body["error"] = f"model {name!r} is {dep.state}" + (
            f": {dep.last_error}" if dep.last_error else ""
        )
    return JSONResponse(body, status_code=200 if dep.state == READY else 400)


def _timeout_s(request: Request, params: dict | None) -> float | None:
    """A client deadline: Triton's ``timeout`` parameter (µs) or ``Request-Timeout`` (s)."""
    if params and "timeout" in params:
        value = params["timeout"]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise InvalidInput("parameter 'timeout' must be a positive number of microseconds")
        return value / 1e6
    return request_timeout_s(request)


async def _decode(
    request: Request, dep: Deployment
) -> tuple[InferenceRequest, dict[str, np.ndarray], float | None]:
    """The parsed request, its input tensors (checked against the model) and its deadline."""
    body = await request.body()
    req, tail = v2_codec.parse_body(body, request.headers.get(v2_codec.HEADER))
    payload = v2_codec.decode_inputs(req, tail, dep.info.get("inputs", []))
    return req, payload, _timeout_s(request, req.parameters)


@router.post("/v2/models/{name}/infer")
@router.post("/v2/models/{name}/versions/{version}/infer")
async def infer(request: Request) -> Response:
    # The path parameters are read from the scope, not declared: both are plain strings,
    # and FastAPI's per-request parameter resolution is a measurable share of a small
    # request's cost (benchmarks/bench_overhead.py).
    name: str = request.path_params["name"]
    version: str | None = request.path_params.get("version")
    try:
        await check_model_access(request, name)
    except AimassError as exc:  # the gate already counted it in the key's usage
        record_refusal(request, name, version, exc.status, usage=False)
        raise
    try:
        dep = _deployment(request, name, version)
        dep.admit()  # a full queue answers 429 before the body is read
        req, payload, timeout_s = await _decode(request, dep)
    except AimassError as exc:
        record_refusal(request, name, version, exc.status)
        raise
    try:
        outputs = await unless_disconnected(request, dep.infer(payload, timeout_s=timeout_s))
    except ClientDisconnected:
        return Response(status_code=499)
    except Exception:
        record_usage(request, name, error=True)
        raise
    record_usage(request, name)
    return _answer(name, dep, req, outputs)


def _answer(
    name: str, dep: Deployment, req: InferenceRequest, outputs: dict[str, np.ndarray]
) -> Response:
    """The v2 response: JSON, or JSON header + binary tensors (Triton's binary extension)."""
    entries, binary = v2_codec.encode_outputs(outputs, req)
    answer = {"model_name": name, "model_version": str(dep.spec.version), "outputs": entries}
    if req.id is not None:
        answer["id"] = req.id
    if req.parameters:
        answer["parameters"] = {
            k: v for k, v in req.parameters.items() if k != "binary_data_output"
        }
    head = v2_codec.dumps(answer)
    if not binary:
        return Response(head, media_type="application/json")
    return Response(
        head + binary,
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(head))},
    )


@router.post("/v2/repository/index")
async def repository_index(request: Request) -> list[dict]:
    body = await request.body()
    try:
        raw = orjson.loads(body) if body.strip() else {}
    except ValueError:
        raise InvalidInput("request body is not valid JSON") from None
    only_ready = bool(raw.get("ready", False)) if isinstance(raw, dict) else False
    entries = await request.app.state.control.index()
    return [
        e
        for e in entries
        if visible(request, e["name"]) and (not only_ready or e["state"] == "READY")
    ]
