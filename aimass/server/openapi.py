"""The OpenAPI document: every answer a route can give, in the shape the client will read.

Routes declare their success model (``response_model=``) and the errors only they can answer
(``responses=errors(...)``). The answers of the middleware are added here, by the rule the
middleware itself applies, so no route can forget them: 401 on every path but the public
probes (``auth.PUBLIC_PATHS``, which need no key) and 413 on every route that takes a body.
Each error has the schema of its protocol (``server/errors.py``): the Open Inference
Protocol's ``{"error": "..."}`` under ``/v2``, OpenAI's shape everywhere else.

FastAPI would also describe a 422 ``HTTPValidationError`` for routes with parameters; this
server answers a bad parameter with a 400 in the protocol's shape instead, so that entry and
its schemas are dropped. ``tests/integration/test_openapi_schemathesis.py`` holds the running
server to this document.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from aimass.protocols import openai as oa
from aimass.protocols import v2
from aimass.server.auth import PUBLIC_PATHS
from aimass.server.body import standalone_schema

SECURITY_SCHEME = "apiKey"

VERSION_SCHEMA = {
    "type": "string",
    "pattern": "^[0-9]*[1-9][0-9]*$",
    "description": "A model version: a positive integer in ASCII digits",
}
"""A ``{version}`` path segment as ``refs.parse_version`` reads it (anything else is a 400)."""

WHY = {
    400: "Invalid request; the message names the field (OpenAI: also in `param`)",
    401: "API key missing, unknown, expired or revoked (when access control is on)",
    403: "The API key may not use this model, or the action needs an admin key",
    404: "Not found: no such model, version, key, file, vector store or job, or it belongs to "
    "another API key",
    409: "Conflicts with what is registered (an existing version or key, a revoked key)",
    413: "Body larger than max_body_bytes, or more rows or items than allowed",
    422: "The model files were refused: wrong format for the runtime, or they do not load",
    429: "Queue full, or the key's rate limit or token budget is spent; see Retry-After",
    503: "The model is not ready (loading, restarting or failed)",
    504: "The request's deadline passed (limits.timeout_s, Request-Timeout or v2 timeout)",
}


def errors(api: str, *statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route of ``api`` (``"v2"`` or ``"v1"``) that can answer
    ``statuses``: each with its reason and the protocol's error schema."""
    model = _error_model(api)
    return {status: {"model": model, "description": WHY[status]} for status in statuses}


def event_stream(chunk: type[BaseModel]) -> dict[str, Any]:
    """The ``content`` entry of an answer streamed as server-sent events, OpenAI's way: each
    event's ``data`` is one JSON ``chunk``, the last one is ``[DONE]``. (OpenAPI 3.1 describes
    an event stream by the schema of one event.)"""
    chunk_data = {
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": standalone_schema(chunk),
    }
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"anyOf": [chunk_data, {"const": "[DONE]"}]},
            "event": {"type": "string"},
            "id": {"type": "string"},
        },
    }
    return {"text/event-stream": {"schema": event}}


def _error_model(api: str) -> type[BaseModel]:
    return {"v2": v2.InferenceErrorResponse, "v1": oa.ErrorResponse}[api]


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``) build ``document(app)``, once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document(app)
        return app.openapi_schema

    app.openapi = openapi


def document(app: FastAPI) -> dict[str, Any]:
    """FastAPI's description of ``app``, completed with what the middleware answers."""
    doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    doc["components"]["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "An AI Mass API key (`aimass keys create`), when access control is on",
        }
    }
    doc["security"] = [{SECURITY_SCHEME: []}]
    for path, operations in doc.get("paths", {}).items():
        api = "v2" if path.startswith("/v2") else "v1"
        for operation in operations.values():
            _complete(operation, path, api, schemas)
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return doc


def _complete(operation: dict, path: str, api: str, schemas: dict) -> None:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path" and parameter["name"] == "version":
            parameter["schema"] = dict(VERSION_SCHEMA)
    responses = operation["responses"]
    if "HTTPValidationError" in str(responses.get("422", "")):
        del responses["422"]
    guarded = {413} if "requestBody" in operation else set()
    if path in PUBLIC_PATHS:
        operation["security"] = []
    else:
        guarded.add(401)
    model = _error_model(api)
    for status in guarded:
        responses.setdefault(
            str(status),
            {
                "description": WHY[status],
                "content": {"application/json": {"schema": _ref(model, schemas)}},
            },
        )
    operation["responses"] = dict(sorted(responses.items()))


def _ref(model: type[BaseModel], schemas: dict) -> dict[str, str]:
    """A reference to ``model``'s schema in the document, added there if missing."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault(model.__name__, schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}
