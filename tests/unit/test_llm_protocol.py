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
        {"model": "m", "prompt": "a", "n": 2},
        {"model": "m", "prompt": "a", "temperature": 3},
        {"model": "m", "prompt": "a", "max_tokens": 0},
        {"model": "m", "prompt": "a", "suffix": "z"},
    ],
)
def test_completion_requests_we_cannot_honour_are_refused(body):
    with pytest.raises(ValidationError):
        oa.CompletionRequest.model_validate(body)


def test_chat_refuses_images_tools_and_missing_schema():
    image = {"type": "image_url", "image_url": {"url": "x"}}
    with pytest.raises(ValidationError):
        oa.ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": [image]}]}
        )
    with pytest.raises(ValidationError):
        oa.ChatCompletionRequest.model_validate(
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [{}]}
        )
    with pytest.raises(ValidationError):
        oa.ChatCompletionRequest.model_validate(
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": "json_schema"},
            }
        )


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
