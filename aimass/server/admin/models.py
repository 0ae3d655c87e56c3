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
from aimass.protocols.v2 import LoadRequest
from aimass.refs import parse_version
from aimass.server import body as bodies
from aimass.server.context import admin_action, require_admin, visible
from aimass.spec import ModelSpec

router = APIRouter()


def _parameters(raw: Any) -> dict:
    params = raw.get("parameters") or {} if isinstance(raw, dict) else {}
    if not isinstance(params, dict):
        raise InvalidInput("parameters must be an object", param="parameters")
    return params


def _version_param(params: dict) -> int | None:
    version = params.get("version")
    if isinstance(version, str):  # a JSON parameter is a number; "1" is not accepted
        raise InvalidInput(
            "parameters.version must be a positive integer", param="parameters.version"
        )
    return parse_version(version, "parameters.version")


@router.post("/v2/repository/models/{name}/load", openapi_extra=bodies.openapi_body(LoadRequest))
async def repository_load(request: Request, name: str) -> dict:
    """Load the newest (or ``parameters.version``) registered version; ``parameters.config``
    may carry a whole model spec to register first, as Triton's load API allows."""
    control = request.app.state.control

    async def work() -> dict:
        params = _parameters(bodies.loads(await request.body(), empty={}))
        config = params.get("config")
        if config is not None:
            spec = ModelSpec.parse({**_config_spec(config), "name": name})
            await control.register(spec, load=False, update=True)
        version = _version_param(params)
        entry = await control.entry(name, version)
        dep = await control.load(entry.spec)
        if dep.state != "ready":
            raise Unavailable(f"model {name!r} failed to load: {dep.last_error}")
        return {"name": name, "version": str(entry.spec.version), "state": dep.state}

    return await admin_action(request, "model.load", name, work())


def _config_spec(config: Any) -> dict:
    try:
        data = orjson.loads(config) if isinstance(config, str) else config
    except ValueError:
        raise InvalidInput("parameters.config is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("parameters.config must be a model spec object")
    return data


@router.post("/v2/repository/models/{name}/unload", openapi_extra=bodies.openapi_body(LoadRequest))
async def repository_unload(request: Request, name: str) -> dict:
    control = request.app.state.control

    async def work() -> list[int]:
        raw = bodies.loads(await request.body(), empty={})
        params = raw.get("parameters") if isinstance(raw, dict) else None
        version = _version_param(params) if isinstance(params, dict) else None
        return await control.unload(name, version)

    versions = await admin_action(request, "model.unload", name, work())
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
async def admin_register(
    request: Request, load: bool = False, replace: bool = False, copy: bool = True
) -> dict:
    """Register a model spec (JSON body), validated first; ``?load=true`` loads it at once,
    ``?copy=false`` serves the files where they are (see ``provision.registration``)."""
    control = request.app.state.control
    raw = await request.body()

    async def work() -> dict:
        data = bodies.loads(raw)
        if not isinstance(data, dict):
            raise InvalidInput("body must be a model spec object")
        spec = ModelSpec.parse(data)
        entry = await control.register(spec, load=load, replace=replace, copy=copy)
        return entry.as_dict()

    return await admin_action(request, "model.register", _spec_target(raw), work())


def _spec_target(raw: bytes) -> str:
    """``name:version`` of a spec body for the audit log; as much as a bad body tells."""
    try:
        data = orjson.loads(raw)
    except ValueError:
        return ""
    if not isinstance(data, dict):
        return ""
    try:
        spec = ModelSpec.parse(data)
    except AimassError:
        name, version = data.get("name"), data.get("version")
        return f"{name if isinstance(name, str) else ''}:{version if version is not None else ''}"
    return f"{spec.name}:{spec.version}"


@router.delete("/v1/admin/models/{name}")
async def admin_remove(request: Request, name: str, version: int | None = None) -> dict:
    control = request.app.state.control
    versions = await admin_action(request, "model.remove", name, control.remove(name, version))
    return {"name": name, "removed_versions": versions}
