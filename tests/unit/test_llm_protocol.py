import pytest
from pydantic import ValidationError

from aimass.errors import InvalidInput
from aimass.protocols import openai as oa
from aimass.runtimes.llamacpp.grammar import grammar_for
from aimass.runtimes.llamacpp.sampling import SamplingParams


def test_chat_request_to_runtime_keeps_only_set_fields():
    req = oa.ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "developer", "content": "be nice"},
                {"role": "user", "content": "hi"},
            ],
            "max_completion_tokens": 5,
            "temperature": 0,
            "stop": "\n",
            "response_format": {"type": "json_object"},
        }
    )
    out = req.to_runtime()
    assert out["messages"][0] == {"role": "system", "content": "be nice"}
    assert out["max_tokens"] == 5
    assert out["temperature"] == 0
    assert out["stop"] == ["\n"]
    assert out["response_format"]["type"] == "json_object"
    assert "top_p" not in out


def test_completion_defaults_to_16_tokens_and_unwraps_single_prompt_list():
    req = oa.CompletionRequest.model_validate({"model": "m", "prompt": ["abc"]})
    assert req.to_runtime()["prompt"] == "abc"
    assert req.max_tokens == 16


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "prompt": ["a", "b"]},
        {"model": "m", "prompt": "a", "n": 0},
        {"model": "m", "prompt": "a", "best_of": 2},
        {"model": "m", "prompt": "a", "echo": True, "logprobs": 1},
        {"model": "m", "prompt": [1, 2], "echo": True},
        {"model": "m", "prompt": "a", "ignore_eos": True},
        {"model": "m", "prompt": "a", "temperature": 3},
        {"model": "m", "prompt": "a", "max_tokens": 0},
        {"model": "m", "prompt": "a", "suffix": "z"},
    ],
)
def test_completion_requests_we_cannot_honour_are_refused(body):
    with pytest.raises(ValidationError):
        oa.CompletionRequest.model_validate(body)


def test_chat_refuses_images_and_missing_schema():
    image = {"type": "image_url", "image_url": {"url": "x"}}
    with pytest.raises(ValidationError):
        oa.ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": [image]}]}
        )
    with pytest.raises(ValidationError):
        oa.ChatCompletionRequest.model_validate(
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema"},
            }
        )


USER = [{"role": "user", "content": "x"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}


def chat_error(**fields) -> tuple[str, str]:
    """The field a refused chat request is refused for, and why."""
    with pytest.raises(ValidationError) as info:
        oa.ChatCompletionRequest.model_validate({"model": "m", "messages": USER, **fields})
    error = info.value.errors()[0]
    return ".".join(str(p) for p in error["loc"]), error["msg"]


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"audio": {"voice": "x"}}, "audio"),
        ({"prediction": {"type": "content"}}, "prediction"),
        ({"functions": []}, "functions"),
        ({"reasoning_effort": "low"}, "reasoning_effort"),
        ({"ignore_eos": True}, "ignore_eos"),
        ({"max_tokens": 3, "max_completion_tokens": 4}, "max_completion_tokens"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "g"}}},
         "tool_choice"),
        ({"tools": [{"type": "custom", "custom": {}}]}, "tools.0.type"),
        ({"logit_bias": {"x": 1}}, "logit_bias.x.[key]"),
        ({"logit_bias": {"5": 101}}, "logit_bias.5"),
    ],
)  # fmt: skip
def test_chat_fields_not_supported_are_refused_by_name(fields, param):
    assert chat_error(**fields)[0] == param


def test_refused_fields_say_why():
    assert "deprecated" in chat_error(functions=[{"name": "f"}])[1]
    assert "not supported" in chat_error(audio={"voice": "x"})[1]


def test_tools_and_logprobs_reach_the_runtime():
    history = [
        *USER,
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function",
                         "function": {"name": "f", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"},
    ]  # fmt: skip
    req = oa.ChatCompletionRequest.model_validate(
        {"model": "m", "messages": history, "tools": [TOOL], "tool_choice": "required",
         "parallel_tool_calls": False, "logprobs": True, "top_logprobs": 2, "n": 3,
         "logit_bias": {"7": -100}}
    )  # fmt: skip
    out = req.to_runtime()
    assert out["tools"] == [TOOL] and out["tool_choice"] == "required"
    assert out["parallel_tool_calls"] is False
    assert out["messages"][1]["tool_calls"][0]["function"]["name"] == "f"
    assert out["messages"][2] == {"role": "tool", "content": "42", "tool_call_id": "c1"}
    assert (out["logprobs"], out["top_logprobs"], out["n"]) == (True, 2, 3)
    assert out["logit_bias"] == {"7": -100.0}


def test_tool_choice_none_sends_no_tools():
    req = oa.ChatCompletionRequest.model_validate(
        {"model": "m", "messages": USER, "tools": [TOOL], "tool_choice": "none"}
    )
    assert "tools" not in req.to_runtime()


def test_completion_logprobs_and_response_format():
    req = oa.CompletionRequest.model_validate(
        {"model": "m", "prompt": "a", "logprobs": 0, "response_format": {"type": "json_object"}}
    )
    out = req.to_runtime()
    assert (out["logprobs"], out["top_logprobs"]) == (True, 0)
    assert out["response_format"]["type"] == "json_object"


def test_chunk_delta_carries_only_set_fields():
    chunk = oa.ChatCompletionChunk(
        id="x",
        created=1,
        model="m",
        choices=[oa.ChatChunkChoice(delta=oa.ChatDelta(content="hi"))],
    ).model_dump()
    assert chunk["choices"][0]["delta"] == {"content": "hi"}
    assert chunk["choices"][0]["finish_reason"] is None


def test_sampling_params_are_range_checked_with_field_names():
    with pytest.raises(InvalidInput, match="top_p"):
        SamplingParams.from_request({"top_p": 1.5})
    with pytest.raises(InvalidInput, match="stop"):
        SamplingParams.from_request({"stop": ["a", "b", "c", "d", "e"]})
    params = SamplingParams.from_request({"temperature": 0, "seed": -1, "stop": "x"})
    assert params.temperature == 0.0 and params.seed == 0xFFFFFFFF and params.stop == ["x"]


def test_response_formats_become_grammars():
    assert grammar_for(None) is None
    assert grammar_for({"type": "text"}) is None
    assert "root" in grammar_for({"type": "json_object"})
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    gbnf = grammar_for({"type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert "root" in gbnf and '\\"a\\"' in gbnf
    with pytest.raises(InvalidInput, match="response_format"):
        grammar_for({"type": "xml"})
