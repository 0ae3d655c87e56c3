"""Forced tool calls as GBNF grammars (the sampler's own parse is covered by the server
tests, where the built-in Gemma answers through them)."""

import pytest

from aimass.errors import InvalidInput
from aimass.runtimes.llamacpp.grammar import MAX_PARALLEL_CALLS, request_grammar, tool_grammar

TOOLS = [
    {"type": "function", "function": {"name": "add", "parameters": {
        "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}},
    {"type": "function", "function": {"name": "now"}},
]  # fmt: skip


def test_free_choices_need_no_grammar():
    for choice in (None, "auto", "none"):
        assert tool_grammar(TOOLS, choice) is None
    assert tool_grammar(None, "required") is None


def test_required_allows_every_function_and_bounded_parallel_calls():
    gbnf = tool_grammar(TOOLS, "required", True)
    assert '"\\"add\\""' in gbnf and '"\\"now\\""' in gbnf
    assert gbnf.startswith('root ::= "<tool_call>\\n" tool-call-json "\\n</tool_call>"')
    assert f"{{0,{MAX_PARALLEL_CALLS - 1}}}" in gbnf
    assert gbnf.count("root ::=") == 1


def test_named_choice_allows_that_function_once():
    gbnf = tool_grammar(TOOLS, {"type": "function", "function": {"name": "now"}}, True)
    assert '"\\"now\\""' in gbnf and "add" not in gbnf and "{0," not in gbnf


def test_an_unsupported_parameters_schema_is_a_400_naming_tools():
    bad = [{"type": "function", "function": {"name": "f", "parameters": {"$ref": "#/nope"}}}]
    with pytest.raises(InvalidInput) as info:
        tool_grammar(bad, "required")
    assert info.value.param == "tools"


def test_request_grammar_order():
    assert request_grammar({"grammar": 'root ::= "x"'}) == 'root ::= "x"'
    forced = request_grammar(
        {"tools": TOOLS, "tool_choice": "required", "response_format": {"type": "json_object"}}
    )
    assert forced.startswith('root ::= "<tool_call>')
    assert request_grammar({"tools": TOOLS, "tool_choice": "auto"}) is None
