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


def stream(text: str, step: int) -> tuple[list, list]:
    """The deltas and calls a streaming parser makes of ``text`` cut every ``step``."""
    parser = ToolCallParser(NAMES, stream=True)
    calls = []
    for i in range(0, len(text), step):
        calls += parser.feed(text[i : i + step])[1]
    calls += parser.finish()[1]
    return parser.take_deltas(), calls


def joined(deltas: list, index: int) -> str:
    return "".join(d.arguments for d in deltas if d.index == index and d.id is None)


@pytest.mark.parametrize("step", [1, 2, 3, 7, 1000])
def test_streamed_arguments_arrive_in_pieces_and_add_up_to_the_call(step):
    text = f"<tool_call>\n{WEATHER}\n</tool_call>\n<tool_call>{ADD}</tool_call>"
    deltas, calls = stream(text, step)
    heads = [d for d in deltas if d.id is not None]
    assert [(d.index, d.name) for d in heads] == [(0, "get_weather"), (1, "add")]
    assert [h.id for h in heads] == [c.id for c in calls]
    assert joined(deltas, 0) == '{"city": "Paris"}' == calls[0].arguments
    assert joined(deltas, 1) == '{"a": 1, "b": 2}' == calls[1].arguments
    if step == 1:  # written a character at a time, the arguments stream as they come
        assert len([d for d in deltas if d.index == 0 and d.id is None]) > 5


def test_a_nested_closing_brace_is_held_only_until_more_text_follows():
    parser = ToolCallParser(NAMES, stream=True)
    parser.feed('<tool_call>{"name": "add", "arguments": {"a": {"b": 1}')
    assert joined(parser.take_deltas(), 0) == '{"a": {"b": 1'
    parser.feed("}")
    assert joined(parser.take_deltas(), 0) == "}"
    parser.feed("}</tool_call>")  # the block's own brace: the held one was the arguments' end
    assert joined(parser.take_deltas(), 0) == "}"
    assert parser.calls[0].arguments == '{"a": {"b": 1}}'


def test_a_streamed_call_whose_arguments_break_keeps_them_as_written():
    deltas, calls = stream('<tool_call>{"name": "add", "arguments": {"a": 1,, }}</tool_call>', 4)
    assert [c.name for c in calls] == ["add"] and calls[0].arguments == '{"a": 1,, }'
    assert joined(deltas, 0) == calls[0].arguments


def test_calls_found_only_whole_stream_whole():
    deltas, calls = stream(f"[{WEATHER}, {ADD}]", 5)
    assert [(d.index, d.name) for d in deltas if d.id] == [(0, "get_weather"), (1, "add")]
    assert json.loads(joined(deltas, 1)) == {"a": 1, "b": 2}
    as_string = '<tool_call>{"name": "add", "arguments": "{\\"a\\": 1}"}</tool_call>'
    deltas, calls = stream(as_string, 3)
    assert joined(deltas, 0) == '{"a": 1}' == calls[0].arguments


def test_a_name_not_offered_streams_nothing_and_stays_content():
    text = '<tool_call>{"name": "nope", "arguments": {"a": 1}}</tool_call>'
    parser = ToolCallParser(NAMES, stream=True)
    content = "".join(parser.feed(text[i : i + 3])[0] for i in range(0, len(text), 3))
    content += parser.finish()[0]
    assert content == text and parser.take_deltas() == []
