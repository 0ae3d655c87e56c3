"""Structured output: OpenAI ``response_format`` turned into a llama.cpp GBNF grammar.

The grammar constrains sampling token by token, so a finished answer always parses (and,
for ``json_schema``, matches the schema as far as llama.cpp's converter supports it).
"""

from __future__ import annotations

import json
from typing import Any

from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from aimass.errors import InvalidInput


def grammar_for(response_format: dict[str, Any] | None) -> str | None:
    """GBNF for a response format; None when the output is free text."""
    if not response_format:
        return None
    kind = response_format.get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_GBNF
    if kind == "json_schema":
        return _schema_grammar(response_format)
    raise InvalidInput(
        f"response_format.type must be text, json_object or json_schema, got {kind!r}",
        param="response_format.type",
    )


def _schema_grammar(response_format: dict[str, Any]) -> str:
    spec = response_format.get("json_schema") or {}
    schema = spec.get("schema", spec if "type" in spec or "properties" in spec else None)
    if not isinstance(schema, dict):
        raise InvalidInput(
            "response_format.json_schema.schema must be a JSON schema object",
            param="response_format.json_schema.schema",
        )
    try:
        return json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises plain exceptions on unsupported schemas
        raise InvalidInput(
            f"response_format.json_schema.schema is not supported: {exc}",
            param="response_format.json_schema.schema",
        ) from exc
