"""The one JSON body parser of every route, and the one shape of its validation errors.

Bodies are read as bytes and parsed by orjson (deep nesting is a 400, not a RecursionError),
then validated by the route's pydantic model. Parsing here instead of through FastAPI body
parameters keeps FastAPI's dependency solving off the hot routes, lets admin routes audit a
refused body, and gives one message shape: ``<field>: <problem>`` naming the first bad field,
which OpenAI's error carries as ``param``. The OpenAPI document still describes each body:
``openapi_body(Model)`` is what routes pass as ``openapi_extra``.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from aimass.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def loads(raw: bytes, *, empty: Any = ...) -> Any:
    """JSON from bytes; an empty body is ``empty`` when given, else an error."""
    if empty is not ... and not raw.strip():
        return empty
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc}", param="body") from None


def validate(model: type[M], data: Any) -> M:
    """``data`` as ``model``; a 400 naming the first bad field otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, param = describe_validation(exc.errors())
        raise InvalidInput(message, param=param) from None


async def parse(request: Request, model: type[M], *, empty: Any = ...) -> M:
    """The request's JSON body validated as ``model``."""
    return validate(model, loads(await request.body(), empty=empty))


def describe_validation(errors: list[dict]) -> tuple[str, str | None]:
    """One readable message (and the first bad field, OpenAI's ``param``) for pydantic errors."""
    parts, first = [], None
    for err in errors[:5]:
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        where = ".".join(loc) or "body"
        first = first or where
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts), first


def openapi_body(model: type[BaseModel], *, required: bool = True) -> dict:
    """``openapi_extra`` documenting a JSON body that the handler parses itself; one that is
    not ``required`` may be left out (the handler reads it as ``{}``)."""
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": standalone_schema(model)}},
        }
    }


def standalone_schema(model: type[BaseModel]) -> dict:
    """``model``'s JSON schema with its definitions in place: it refers to nothing else."""
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return _inline(schema, defs)


def _inline(node: Any, defs: dict) -> Any:
    """Replace references to ``defs`` by the definitions: the body schema must stand alone."""
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        prefix = "#/components/schemas/"
        if ref.startswith(prefix) and ref.removeprefix(prefix) in defs:
            return _inline(defs[ref.removeprefix(prefix)], defs)
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node
