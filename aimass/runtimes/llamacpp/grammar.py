"""Structured output: OpenAI ``response_format`` and forced tool calls as llama.cpp GBNF.

The grammar constrains sampling token by token, so a finished answer always parses (and,
for ``json_schema``, matches the schema as far as llama.cpp's converter supports it).

A forced tool call (``tool_choice`` ``required`` or a named function) is held to the
``<tool_call>`` form the built-in chat template teaches (``chat.TOOLS_INTRO``)::

    <tool_call>
    {"name": "get_weather", "arguments": {"city": "Paris"}}
    </tool_call>

with ``name`` one of the allowed functions and ``arguments`` that function's ``parameters``
schema, so even a small model returns a call that validates. With ``required`` and
``parallel_tool_calls`` the answer may hold up to ``MAX_PARALLEL_CALLS`` such blocks, one per
line; a named function, or no parallel calls, exactly one. The bound matters: a small base
model, once in the form, keeps adding calls (Gemma 3 270M asked for the weather in Paris
called a tool three times in 120 tokens and went on).
"""

from __future__ import annotations

import json
import re
from typing import Any

from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

from aimass.errors import InvalidInput

_ROOT = re.compile(r"^root ::=", re.MULTILINE)
_CALL_RULE = "tool-call-json"
MAX_PARALLEL_CALLS = 8


def request_grammar(request: dict[str, Any]) -> str | None:
    """The grammar a runtime request asks for: its own ``grammar`` (GBNF) when set, else a
    forced tool call's, else its ``response_format``'s; None for free text."""
    if request.get("grammar"):
        return str(request["grammar"])
    tools = tool_grammar(
        request.get("tools"), request.get("tool_choice"), request.get("parallel_tool_calls")
    )
    return tools or grammar_for(request.get("response_format"))


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


def tool_grammar(
    tools: list[dict[str, Any]] | None, choice: Any, parallel: bool | None = True
) -> str | None:
    """GBNF for a forced tool call; None when the model is free to answer in text
    (``auto``, ``none``, or no tools)."""
    if not tools or choice in (None, "auto", "none"):
        return None
    functions = [t["function"] for t in tools]
    if isinstance(choice, dict):
        name = choice["function"]["name"]
        functions = [f for f in functions if f["name"] == name]
        parallel = False  # naming a function asks for that call, once
    elif choice != "required":
        raise InvalidInput(f"tool_choice {choice!r} is not supported", param="tool_choice")
    calls = [_call_schema(f) for f in functions]
    schema = calls[0] if len(calls) == 1 else {"anyOf": calls}
    try:
        body = json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # the converter raises plain exceptions on unsupported schemas
        raise InvalidInput(
            f"a tool's parameters schema is not supported: {exc}", param="tools"
        ) from exc
    block = rf'"<tool_call>\n" {_CALL_RULE} "\n</tool_call>"'
    more = MAX_PARALLEL_CALLS - 1 if parallel is not False else 0
    root = f"root ::= {block}" + (rf' ("\n" {block}){{0,{more}}}' if more else "")
    return root + "\n" + _ROOT.sub(f"{_CALL_RULE} ::=", body)


def _call_schema(function: dict[str, Any]) -> dict[str, Any]:
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    return {
        "type": "object",
        "properties": {"name": {"const": function["name"]}, "arguments": parameters},
        "required": ["name", "arguments"],
        "additionalProperties": False,
    }


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
