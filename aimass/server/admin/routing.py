"""Serving routes of a model over HTTP: promote a version, split traffic (canary), roll back.

The admin equivalents of ``aimass models promote|route|rollback``, under the admin models API.
Each change needs an admin key and is audited (``model.promote``, ``model.route``,
``model.rollback``) with the model's name, or ``name:version`` for a promotion. Promote and
route load the versions they send traffic to and change the route only once those serve; the
control plane applies the new route to this server at once and other servers at their next
reconcile.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from aimass.protocols.admin import ModelRoute, ModelRouting, Promotion, RouteUpdate
from aimass.server import body as bodies
from aimass.server.context import admin_action, require_admin
from aimass.server.openapi import errors

router = APIRouter()


@router.get("/v1/admin/models/{name}/route", response_model=ModelRouting,
            responses=errors("v1", 403, 404))  # fmt: skip
async def get_route(request: Request, name: str) -> dict:
    """The route in force (null when the newest ready version serves) and its history."""
    await require_admin(request)
    history = await request.app.state.control.route_history(name)
    current = next((r for r in history if r.rolled_back_at is None), None)
    return {
        "name": name,
        "route": current.as_dict() if current else None,
        "history": [r.as_dict() for r in history],
    }


@router.put("/v1/admin/models/{name}/route", response_model=ModelRoute,
            responses=errors("v1", 400, 403, 404, 503),
            openapi_extra=bodies.openapi_body(RouteUpdate))  # fmt: skip
async def put_route(request: Request, name: str) -> dict:
    """Split the requests that name no version among versions by weight (percent, sum 100)."""

    async def work() -> dict:
        update = await bodies.parse(request, RouteUpdate)
        return (await request.app.state.control.set_route(name, update.weights)).as_dict()

    return await admin_action(request, "model.route", name, work())


@router.post("/v1/admin/models/{name}/promote", response_model=ModelRoute,
             responses=errors("v1", 400, 403, 404, 503),
             openapi_extra=bodies.openapi_body(Promotion))  # fmt: skip
async def promote(request: Request, name: str) -> dict:
    """Make one registered version serve every request that names no version."""
    version: int | None = None

    def target() -> str:
        return name if version is None else f"{name}:{version}"

    async def work() -> dict:
        nonlocal version
        version = (await bodies.parse(request, Promotion)).version
        return (await request.app.state.control.promote(name, version)).as_dict()

    return await admin_action(request, "model.promote", target, work())


@router.post("/v1/admin/models/{name}/rollback", response_model=ModelRoute,
             responses=errors("v1", 403, 404, 409))  # fmt: skip
async def rollback(request: Request, name: str) -> dict:
    """Back to the route before the current one; 409 when there is none."""
    control = request.app.state.control
    return (await admin_action(request, "model.rollback", name, control.rollback(name))).as_dict()
