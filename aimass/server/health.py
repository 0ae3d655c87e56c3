"""Probes: liveness and readiness, answered without a key (``server/auth.py:PUBLIC_PATHS``).

Liveness (``/healthz``, ``/v2/health/live``) is 200 while the process serves HTTP: restart the
server when it fails. Readiness (``/health``, ``/v2/health/ready``) is the control plane's
``ready()``: send the server traffic while it is 200 (``strict_readiness`` decides whether a
model that failed to load counts, see ``docs/operations.md``). The bodies say no more than that,
since anyone may read them; which model is not ready is in each model's own ready endpoint.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from aimass.protocols import v2

router = APIRouter()

_NOT_READY = {503: {"model": v2.ReadyResponse, "description": "A model meant to be loaded is not"}}


@router.get("/healthz", response_model=v2.LiveResponse)
@router.get("/v2/health/live", response_model=v2.LiveResponse)
async def live() -> dict:
    return {"live": True}


@router.get("/health", response_model=v2.ReadyResponse, responses=_NOT_READY)
@router.get("/v2/health/ready", response_model=v2.ReadyResponse, responses=_NOT_READY)
async def ready(request: Request) -> Response:
    ok = request.app.state.control.ready()
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)
