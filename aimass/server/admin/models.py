"""Model repository control (Open Inference Protocol extension), registration and listing.

Changing what is served needs an admin key when access control is on, and every such action
is written to the audit log with its target as ``name:version`` once the version is known
(``_Target``: a body may name it, or the registry picks it), else the bare name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request

from aimass.engine.deployment import READY, Deployment
from aimass.errors import InvalidInput, NotFound, Unavailable
from aimass.protocols import admin as wire
from aimass.protocols import openai as oa
from aimass.protocols.v2 import LoadRequest, LoadResponse, UnloadResponse
from aimass.refs import MAX_VERSION, parse_version, split_model
from aimass.registry.models import ModelEntry
from aimass.server import body as bodies
from aimass.server.context import admin_action, audited, require_admin, visible
from aimass.server.openapi import errors
from aimass.spec import ModelSpec

router = APIRouter()

_LOAD_BODY = bodies.openapi_body(LoadRequest, required=False)
"""Load and unload take an optional body: an absent one is ``{}``."""


class _Target:
    """The audit target of an action on a model, filled in as the action learns it and read
    when the action is recorded: ``name:version`` once a version is known, else ``name``."""

    def __init__(self, name: str = "", version: int | None = None):
        self.name = name
        self.version = version

    def __call__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"

    def read(self, data: dict) -> None:
        """As much as a spec body tells before it is validated."""
        name, version = data.get("name"), data.get("version")
        self.name = name if isinstance(name, str) else ""
        valid = isinstance(version, int) and not isinstance(version, bool) and version > 0
        self.version = version if valid else None


def _parameters(raw: Any) -> dict:
    """The ``parameters`` of a load or unload body (a ``LoadRequest``); none when absent."""
    return bodies.validate(LoadRequest, raw).parameters or {}


def _version_param(params: dict) -> int | None:
    version = params.get("version")
    if isinstance(version, str):  # a JSON parameter is a number; "1" is not accepted
        raise InvalidInput(
            "parameters.version must be a positive integer", param="parameters.version"
        )
    return parse_version(version, "parameters.version")


@router.post("/v2/repository/models/{name}/load", response_model=LoadResponse,
             responses=errors("v2", 400, 403, 404, 409, 422, 503),
             openapi_extra=_LOAD_BODY)  # fmt: skip
async def repository_load(request: Request, name: str) -> dict:
    """Load the newest (or ``parameters.version``) registered version; ``parameters.config``
    may carry a whole model spec to register first (and then load), as Triton's load API
    allows. Audited as ``model.load``, and a registration as ``model.register`` too."""
    control = request.app.state.control
    target = _Target(name)

    async def work() -> dict:
        params = _parameters(bodies.loads(await request.body(), empty={}))
        target.version = _version_param(params)
        config = params.get("config")
        if config is not None:
            registered = await _register_config(request, name, config)
            target.version = target.version or registered
        entry = await control.entry(name, target.version)
        target.version = entry.spec.version
        dep = await control.load(entry.spec)
        if dep.state != READY:
            raise Unavailable(f"model {name!r} failed to load: {dep.last_error}")
        return {"name": name, "version": str(entry.spec.version), "state": dep.state}

    return await admin_action(request, "model.load", target, work())


async def _register_config(request: Request, name: str, config: Any) -> int:
    """Register the spec of a load's ``parameters.config``, audited as ``model.register``;
    returns its version."""
    target = _Target(name)
    async with audited(request, "model.register", target):
        data = {**_config_spec(config), "name": name}
        target.read(data)
        spec = ModelSpec.parse(data)
        target.version = spec.version
        entry = await request.app.state.control.register(spec, load=False, update=True)
        target.version = entry.spec.version
    return entry.spec.version


def _config_spec(config: Any) -> dict:
    try:
        data = orjson.loads(config) if isinstance(config, str) else config
    except ValueError:
        raise InvalidInput("parameters.config is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidInput("parameters.config must be a model spec object")
    return data


@router.post("/v2/repository/models/{name}/unload", response_model=UnloadResponse,
             responses=errors("v2", 400, 403, 404),
             openapi_extra=_LOAD_BODY)  # fmt: skip
async def repository_unload(request: Request, name: str) -> dict:
    control = request.app.state.control
    target = _Target(name)

    async def work() -> list[int]:
        params = _parameters(bodies.loads(await request.body(), empty={}))
        target.version = _version_param(params)
        return await control.unload(name, target.version)

    versions = await admin_action(request, "model.unload", target, work())
    return {"name": name, "unloaded_versions": [str(v) for v in versions]}


@router.get("/v1/models", response_model=oa.ModelList)
async def openai_models(request: Request) -> dict:
    """Loaded models in OpenAI's list shape, one entry per name, as OpenAI clients expect:
    ``version`` is the one a plain name is served by, ``versions`` every loaded version (each
    usable as ``name:version``), ``created`` when the served version was registered."""
    loaded: dict[str, list[Deployment]] = {}
    for dep in request.app.state.manager.deployments():
        if visible(request, dep.spec.name):
            loaded.setdefault(dep.spec.name, []).append(dep)
    registered = await _registered(request) if loaded else {}
    manager = request.app.state.manager
    data = [
        _openai_model(name, deps, manager.primary(name), registered)
        for name, deps in loaded.items()
    ]
    return {"object": "list", "data": data}


@router.get("/v1/models/{model}", response_model=oa.Model, responses=errors("v1", 400, 404))
async def openai_model(request: Request, model: str) -> dict:
    """One model as ``/v1/models`` lists it; ``name:version`` describes that loaded version.
    A model the key may not use is not found, as in OpenAI's API."""
    name, version = split_model(model)
    deps = [
        d
        for d in request.app.state.manager.deployments()
        if d.spec.name == name and version in (None, d.spec.version)
    ]
    if not deps or not visible(request, name):
        raise NotFound(f"model {model!r} is not loaded", param="model")
    served = deps[0] if version is not None else request.app.state.manager.primary(name)
    return _openai_model(model, deps, served, await _registered(request))


async def _registered(request: Request) -> dict[tuple[str, int], ModelEntry]:
    return {e.spec.key: e for e in await request.app.state.control.entries()}


def _openai_model(
    model_id: str,
    versions: list[Deployment],
    served: Deployment,
    registered: dict[tuple[str, int], ModelEntry],
) -> dict:
    """``versions`` of one model (oldest first) as an OpenAI model object; ``served`` is the
    version its id names (``ModelManager.primary`` for a plain name)."""
    entry = registered.get(served.spec.key)
    return {
        "id": model_id,
        "object": "model",
        "created": _unix(entry.created_at) if entry and entry.created_at else 0,
        "owned_by": "aimass",
        "task": served.spec.task,
        "version": served.spec.version,
        "versions": [d.spec.version for d in versions],
        "state": served.state,
        "description": served.spec.description,
    }


def _unix(naive_utc: datetime) -> int:
    return int(naive_utc.replace(tzinfo=UTC).timestamp())


@router.get("/v1/admin/models", response_model=wire.RegisteredModelList,
            response_model_exclude_unset=True, responses=errors("v1", 403))  # fmt: skip
async def admin_list(request: Request) -> dict:
    """Every registered version with desired and observed state, the last error, and its
    ``weight`` in the model's serving route when it has one."""
    await require_admin(request)
    control = request.app.state.control
    routes = await control.routes()
    out = []
    for entry in await control.entries():
        item = entry.as_dict()
        route = routes.get(entry.spec.name)
        if route is not None:
            item["weight"] = route.weights.get(entry.spec.version, 0)
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


@router.post("/v1/admin/models", response_model=wire.RegisteredModel,
             response_model_exclude_unset=True,
             responses=errors("v1", 400, 403, 409, 422, 503),
             openapi_extra=bodies.openapi_body(ModelSpec))  # fmt: skip
async def admin_register(
    request: Request, load: bool = False, replace: bool = False, copy: bool = True
) -> dict:
    """Register a model spec (JSON body), validated first; ``?load=true`` loads it at once,
    ``?copy=false`` serves the files where they are (see ``provision.registration``)."""
    control = request.app.state.control
    target = _Target()

    async def work() -> dict:
        data = bodies.loads(await request.body())
        if not isinstance(data, dict):
            raise InvalidInput("body must be a model spec object")
        target.read(data)
        spec = ModelSpec.parse(data)
        target.version = spec.version
        entry = await control.register(spec, load=load, replace=replace, copy=copy)
        target.version = entry.spec.version
        return entry.as_dict()

    return await admin_action(request, "model.register", target, work())


@router.delete("/v1/admin/models/{name}", response_model=wire.RemovedModel,
               responses=errors("v1", 400, 403, 404))  # fmt: skip
async def admin_remove(
    request: Request,
    name: str,
    version: Annotated[int | None, Query(ge=1, le=MAX_VERSION)] = None,
) -> dict:
    control = request.app.state.control
    target = _Target(name, version)
    versions = await admin_action(request, "model.remove", target, control.remove(name, version))
    return {"name": name, "removed_versions": versions}
