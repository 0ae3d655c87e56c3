"""Tool calls read out of generated text, whole and cut into stream pieces anywhere."""

import json

import pytest

from aimass.serving.toolcalls import ToolCallParser

NAMES = frozenset({"get_weather", "add"})
WEATHER = '{"name": "get_weather", "arguments": {"city": "Paris"}}'
ADD = '{"name": "add", "arguments": {"a": 1, "b": 2}}'


def parse(text: str, step: int) -> tuple[str, list[tuple[str, dict]]]:
    parser = ToolCallParser(NAMES)
    content, calls = [], []
    for i in range(0, len(text), step):
        piece, done = parser.feed(text[i : i + step])
        content.append(piece)
        calls += done
    piece, done = parser.finish()
    content.append(piece)
    calls += done
    return "".join(content), [(c.name, json.loads(c.arguments)) for c in calls]


@pytest.mark.parametrize("step", [1, 2, 5, 1000])
def test_tagged_calls_are_found_however_the_text_is_cut(step):
    text = f"<tool_call>\n{WEATHER}\n</tool_call>\n<tool_call>\n{ADD}\n</tool_call>\n"
    content, calls = parse(text, step)
    assert content == ""
    assert calls == [("get_weather", {"city": "Paris"}), ("add", {"a": 1, "b": 2})]


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_text_around_calls_is_content(step):
    content, calls = parse(f"Let me check.<tool_call>{WEATHER}</tool_call>", step)
    assert content == "Let me check." and calls == [("get_weather", {"city": "Paris"})]


@pytest.mark.parametrize("step", [1, 1000])
def test_plain_text_passes_whole_including_a_lone_angle_bracket(step):
    text = "  a < b and <tool_x> is not a tag\n"
    assert parse(text, step) == (text, [])


def test_a_bare_json_answer_is_a_call_llama_style():
    assert parse(' {"name": "add", "parameters": {"a": 1, "b": 2}}', 4)[1] == [
        ("add", {"a": 1, "b": 2})
    ]
    assert parse(f"[{WEATHER}, {ADD}]", 7)[1] == [
        ("get_weather", {"city": "Paris"}),
        ("add", {"a": 1, "b": 2}),
    ]


def test_json_that_is_not_a_call_stays_content():
    assert parse('{"answer": 42}', 3) == ('{"answer": 42}', [])


@pytest.mark.parametrize(
    "body",
    ['{"name": "nope", "arguments": {}}', "{not json", '{"name": "add", "arguments": 3}'],
)
def test_a_bad_block_is_shown_not_dropped(body):
    text = f"<tool_call>{body}</tool_call>"
    assert parse(text, 2) == (text, [])


def test_a_call_cut_by_max_tokens_counts_when_its_json_is_whole():
    assert parse(f"<tool_call>\n{ADD}\n</tool", 5)[1] == [("add", {"a": 1, "b": 2})]
    assert parse('<tool_call>\n{"name": "add", "argu', 5) == (
        '<tool_call>\n{"name": "add", "argu',
        [],
    )


def test_call_ids_are_unique():
    parser = ToolCallParser(NAMES)
    _, calls = parser.feed(f"<tool_call>{ADD}</tool_call><tool_call>{ADD}</tool_call>")
    assert len({c.id for c in calls}) == 2 and all(c.id.startswith("call_") for c in calls)
