"""The OpenAI surface of chat and completions beyond plain generation, with the official SDK
against a real server and the built-in Gemma 3 270M: tools (forced, named, streamed as
deltas, results sent back), n, logprobs, seed, json_object, stop strings that span tokens,
max_completion_tokens, logit_bias, echo, cached tokens, and a 400 naming every field that is
not supported."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from tests.conftest import run_server
from tests.integration.conftest_llm import gemma_file, llm_spec

WEATHER = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "maxLength": 40},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "unit"],
    "additionalProperties": False,
}
ADD = {
    "type": "object",
    "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
    "required": ["a", "b"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "function": {"name": "get_weather", "description": "Weather now", "parameters": WEATHER},
    },
    {"type": "function", "function": {"name": "add", "description": "a + b", "parameters": ADD}},
]
SCHEMAS = {"get_weather": WEATHER, "add": ADD}
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def server(pytestconfig, tmp_path_factory):
    # A forced tool call is ~40 grammar-checked tokens after a ~300-token prompt: a loaded
    # 2-core machine can take a minute over it, so the deadline is not the model's 120 s.
    spec = llm_spec(gemma_file(pytestconfig), limits={"timeout_s": 600})
    with run_server(tmp_path_factory.mktemp("surface"), models=[spec]) as url:
        yield url


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=120)


def chat(client, **kw):
    return client.chat.completions.create(**{"model": "gemma", "temperature": 0, **kw})


def complete(client, **kw):
    kw = {"model": "gemma", "prompt": PROMPT, "temperature": 0, **kw}
    return client.completions.create(**kw)


def assert_valid(call) -> dict:
    """A call names an offered function and its arguments validate against its schema."""
    assert call.type == "function" and call.id.startswith("call_")
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, SCHEMAS[call.function.name])
    return arguments


@pytest.fixture(scope="module")
def forced(client):
    """The built-in Gemma (a small base model) made to call a tool by the grammar."""
    return chat(
        client, messages=ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=False,
        max_tokens=80,
    )  # fmt: skip


def test_required_tool_call_validates_against_the_schema(forced):
    (choice,) = forced.choices
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert call.function.name in SCHEMAS
    assert_valid(call)


def test_named_tool_choice_calls_that_function(client):
    out = chat(
        client, messages=ASK, tools=TOOLS, max_tokens=60,
        tool_choice={"type": "function", "function": {"name": "add"}},
    )  # fmt: skip
    (call,) = out.choices[0].message.tool_calls
    assert call.function.name == "add" and out.choices[0].finish_reason == "tool_calls"
    assert_valid(call)


def test_parallel_tool_calls_may_return_several_calls(client):
    out = chat(client, messages=ASK, tools=TOOLS, tool_choice="required", max_tokens=100)
    calls = out.choices[0].message.tool_calls
    assert len(calls) >= 2 and len({c.id for c in calls}) == len(calls)
    for call in calls:
        assert_valid(call)


def test_tool_calls_stream_as_deltas(client, forced):
    chunks = list(
        chat(
            client, messages=ASK, tools=TOOLS, tool_choice="required", parallel_tool_calls=False,
            max_tokens=80, stream=True, stream_options={"include_usage": True},
        )
    )  # fmt: skip
    deltas = [d for c in chunks if c.choices for d in c.choices[0].delta.tool_calls or []]
    assert len(deltas) > 2, "an id and name first, then the arguments in pieces as written"
    assert deltas[0].id and deltas[0].function.name and deltas[0].type == "function"
    assert all(d.index == 0 for d in deltas) and not any(d.id for d in deltas[1:])
    arguments = "".join(d.function.arguments or "" for d in deltas)
    whole = forced.choices[0].message.tool_calls[0]
    assert (deltas[0].function.name, arguments) == (whole.function.name, whole.function.arguments)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == ""
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage.completion_tokens == forced.usage.completion_tokens


def test_tool_results_are_accepted_back(client, forced):
    call = forced.choices[0].message.tool_calls[0]
    history = [
        *ASK,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
    ]
    out = chat(client, messages=history, tools=TOOLS, max_tokens=4)
    assert out.choices[0].finish_reason in ("stop", "length", "tool_calls")
    assert out.usage.prompt_tokens > forced.usage.prompt_tokens  # the history was rendered
    quiet = chat(client, messages=history, tools=TOOLS, tool_choice="none", max_tokens=4)
    assert quiet.choices[0].message.tool_calls is None
    assert isinstance(quiet.choices[0].message.content, str)


def test_n_gives_that_many_choices(client):
    out = complete(client, n=2, max_tokens=6, temperature=1.0, seed=5)
    assert sorted(c.index for c in out.choices) == [0, 1]
    assert all(c.finish_reason for c in out.choices) and out.usage.completion_tokens <= 12
    chunks = list(chat(client, messages=ASK, n=2, max_tokens=4, stream=True))
    ends = {c.choices[0].index: c.choices[0].finish_reason for c in chunks if c.choices}
    assert set(ends) == {0, 1} and all(ends.values())


def test_chat_logprobs(client):
    out = chat(client, messages=ASK, max_tokens=5, logprobs=True, top_logprobs=3)
    entries = out.choices[0].logprobs.content
    assert len(entries) == out.usage.completion_tokens
    assert "".join(e.token for e in entries) == out.choices[0].message.content
    for e in entries:
        assert e.logprob <= 0 and len(e.top_logprobs) == 3
        assert e.top_logprobs[0].logprob == pytest.approx(e.logprob, abs=1e-4)  # greedy
        assert bytes(e.bytes).decode() == e.token
    chunks = list(chat(client, messages=ASK, max_tokens=5, logprobs=True, stream=True))
    streamed = [e for c in chunks if c.choices and c.choices[0].logprobs
                for e in c.choices[0].logprobs.content]  # fmt: skip
    assert [e.token for e in streamed] == [e.token for e in entries]


def test_completion_logprobs_in_the_legacy_shape(client):
    out = complete(client, max_tokens=5, logprobs=2)
    lp = out.choices[0].logprobs
    assert len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == 5
    assert "".join(lp.tokens) == out.choices[0].text
    assert lp.text_offset == [sum(len(t) for t in lp.tokens[:i]) for i in range(5)]
    assert all(len(top) <= 2 for top in lp.top_logprobs)


def test_seed_reproduces_a_sampled_answer(client):
    kw = dict(max_tokens=8, temperature=1.0, top_p=0.95)
    first, again = (complete(client, seed=1234, **kw).choices[0].text for _ in range(2))
    others = {complete(client, seed=s, **kw).choices[0].text for s in (1, 2)}
    assert first == again and len(others | {first}) > 1


def test_json_object_output_parses(client):
    ask = [
        {"role": "user", "content": 'Give the capital of France as JSON, like {"capital": "..."}.'}
    ]
    out = chat(client, messages=ask, max_tokens=40, response_format={"type": "json_object"})
    assert out.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(out.choices[0].message.content), dict)


def test_stop_string_spanning_two_tokens(client):
    tokens = complete(client, max_tokens=8, logprobs=0).choices[0].logprobs.tokens
    i = next(i for i in range(1, 7) if len(tokens[i]) > 1 and len(tokens[i + 1]) > 1)
    stop = tokens[i][-2:] + tokens[i + 1][:2]  # the end of one token, the start of the next
    text = "".join(tokens)
    for stream in (False, True):
        kw = dict(max_tokens=8, stop=[stop], stream=stream)
        if stream:
            got = "".join(c.choices[0].text for c in complete(client, **kw) if c.choices)
        else:
            got = complete(client, **kw).choices[0].text
        assert got == text[: text.index(stop)]


def test_max_completion_tokens(client):
    out = chat(client, messages=ASK, max_completion_tokens=3)
    assert out.usage.completion_tokens == 3 and out.choices[0].finish_reason == "length"
    same = chat(client, messages=ASK, max_completion_tokens=3, max_tokens=3)
    assert same.choices[0].message.content == out.choices[0].message.content
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, messages=ASK, max_completion_tokens=3, max_tokens=4)
    assert info.value.param == "max_completion_tokens"


def test_logit_bias_can_force_a_token(client):
    out = complete(client, max_tokens=3, logit_bias={"1000": 100}, logprobs=0)
    tokens = out.choices[0].logprobs.tokens
    assert len(tokens) == 3 and len(set(tokens)) == 1


def test_echo_puts_the_prompt_first(client):
    out = complete(client, max_tokens=3, echo=True)
    plain = complete(client, max_tokens=3)
    assert out.choices[0].text == PROMPT + plain.choices[0].text


def test_cached_tokens_are_reported(client):
    messages = [{"role": "system", "content": "You answer in one word. " * 20}, *ASK]
    first = chat(client, messages=messages, max_tokens=2)
    second = chat(client, messages=messages, max_tokens=2)
    assert first.usage.prompt_tokens_details.cached_tokens >= 0
    assert second.usage.prompt_tokens_details.cached_tokens > 0
    assert second.choices[0].message.content == first.choices[0].message.content


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"modalities": ["text", "audio"]}, "modalities.1"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"service_tier": "flex"}, "service_tier"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"n": 99}, "n"),
        ({"extra_body": {"ignore_eos": True}}, "ignore_eos"),
    ],
)
def test_unsupported_chat_fields_are_400_naming_the_field(client, fields, param):
    with pytest.raises(openai.BadRequestError) as info:
        chat(client, messages=ASK, max_tokens=1, **fields)
    assert info.value.param == param, info.value.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"suffix": "end"}, "suffix"),
        ({"best_of": 3}, "best_of"),
        ({"echo": True, "logprobs": 1}, "logprobs"),
        ({"extra_body": {"max_completion_tokens": 2}}, "max_completion_tokens"),
    ],
)
def test_unsupported_completion_fields_are_400_naming_the_field(client, fields, param):
    with pytest.raises(openai.BadRequestError) as info:
        complete(client, max_tokens=1, **fields)
    assert info.value.param == param, info.value.message


def test_metadata_fields_are_accepted(client):
    out = chat(
        client, messages=ASK, max_tokens=1, user="u1", metadata={"k": "v"}, store=False,
        prompt_cache_key="k", safety_identifier="s", service_tier="auto", modalities=["text"],
    )  # fmt: skip
    assert out.choices[0].finish_reason == "length"
