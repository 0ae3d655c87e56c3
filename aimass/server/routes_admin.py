"""Model repository control (Open Inference Protocol extension), registration and listing.

Changing what is served needs an admin key when access control is on, and every such action
is written to the audit log.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, Request

from aimass.errors import AimassError, InvalidInput, Unavailable
from aimass.server.deps import audit, require_admin, visible
from aimass.spec import ModelSpec

router = APIRouter()


async def _json_body(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        return {}
    try:
        return orjson.loads(body)
    except ValueError:
        raise InvalidInput("request body is not valid JSON") from None


async def _audited(request: Request, action: str, target: str, work):
    try:
        result = await work
    except AimassError as exc:
        audit(request, action, target, f"error {exc.status}: {exc.message}")
        raise
    audit(request, action, target, "ok")
    return result


@router.post("/v2/repository/models/{name}/load")
async def repository_load(request: Request, name: str) -> dict:
    """Load the newest (or ``parameters.version``) registered version; ``parameters.config``
    may carry a whole model spec to register first, as Triton's load API allows."""
    await require_admin(request)
    raw = await _json_body(request)
    params = raw.get("parameters") or {} if isinstance(raw, dict) else {}
    if not isinstance(params, dict):
        raise InvalidInput("parameters must be an object")
    control = request.app.state.control

    async def work():
        config = params.get("config")
        if config is not None:
            try:
                data = orjson.loads(config) if isinstance(config, str) else config
            except ValueError:
                raise InvalidInput("parameters.config is not valid JSON") from None
            if not isinstance(data, dict):
                raise InvalidInput("parameters.config must be a model spec object")
            spec = ModelSpec.parse({**data, "name": name})
            await control.register(spec, load=False, replace=True)
        version = params.get("version")
        if version is not None and (not isinstance(version, int) or version < 1):
            raise InvalidInput("parameters.version must be a positive integer")
        entry = await control.entry(name, version)
        dep = await control.load(entry.spec)
        if dep.state != "ready":
            raise Unavailable(f"model {name!r} failed to load: {dep.last_error}")
        return {"name": name, "version": str(entry.spec.version), "state": dep.state}

    return await _audited(request, "model.load", name, work())


@router.post("/v2/repository/models/{name}/unload")
async def repository_unload(request: Request, name: str) -> dict:
    await require_admin(request)
    raw = await _json_body(request)
    params = raw.get("parameters") or {} if isinstance(raw, dict) else {}
    version = params.get("version") if isinstance(params, dict) else None
    if version is not None and (not isinstance(version, int) or version < 1):
        raise InvalidInput("parameters.version must be a positive integer")
    control = request.app.state.control
    versions = await _audited(request, "model.unload", name, control.unload(name, version))
    return {"name": name, "unloaded_versions": [str(v) for v in versions]}


@router.get("/v1/models")
async def openai_models(request: Request) -> dict:
    """Loaded models in OpenAI's list shape (one entry per name, as OpenAI clients expect)."""
    control = request.app.state.control
    seen: dict[str, dict] = {}
    for dep in control.manager.deployments():
        name = dep.spec.name
        if name in seen or not visible(request, name):
            continue
        seen[name] = {
            "id": name,
            "object": "model",
            "created": int(time.time()),
            "owned_by": "aimass",
            "task": dep.spec.task,
            "version": dep.spec.version,
            "state": dep.state,
        }
    return {"object": "list", "data": list(seen.values())}


@router.get("/v1/admin/models")
async def admin_list(request: Request) -> dict:
    """Every registered version with desired and observed state and the last error."""
    await require_admin(request)
    control = request.app.state.control
    out = []
    for entry in await control.entries():
        item = entry.as_dict()
        dep = control.manager.find(*entry.spec.key)
        if dep is not None:
            item.update(
                state=dep.state,
                last_error=dep.last_error,
                restarts=dep.restarts,
                replicas=len([r for r in dep.replicas if r.alive]),
                queue_depth=dep.queue_depth,
            )
        out.append(item)
    return {"object": "list", "data": out}


@router.post("/v1/admin/models")
async def admin_register(request: Request, load: bool = False, replace: bool = False) -> dict:
    """Register a model spec (JSON body); ``?load=true`` loads it at once."""
    await require_admin(request)
    raw = await _json_body(request)
    if not isinstance(raw, dict):
        raise InvalidInput("body must be a model spec object")
    spec = ModelSpec.parse(raw)
    control = request.app.state.control
    entry = await _audited(
        request,
        "model.register",
        f"{spec.name}:{spec.version}",
        control.register(spec, load=load, replace=replace),
    )
    return entry.as_dict()


@router.delete("/v1/admin/models/{name}")
async def admin_remove(request: Request, name: str, version: int | None = None) -> dict:
    await require_admin(request)
    control = request.app.state.control
    versions = await _audited(request, "model.remove", name, control.remove(name, version))
    return {"name": name, "removed_versions": versions}
