"""Property-based fuzzing of /v1/completions and /v1/chat/completions on the built-in Gemma:
whatever a client sends, never a 5xx, refusals in OpenAI's shape, streams that end in
``[DONE]``, and the model still serving afterwards. The server's ``max_tokens_ceiling`` is
small so that the requests that are valid finish fast."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import run_server
from tests.integration.conftest_llm import gemma_file, llm_spec
from tests.strategies import any_json, fuzz, scalars

texts = st.text(max_size=40)
schemas = st.one_of(
    st.just({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}),
    st.just({"type": "array", "items": {"type": "string"}, "maxItems": 2}),
    st.dictionaries(st.sampled_from(["type", "properties", "items", "enum", "$ref"]), any_json),
    any_json,
)
response_formats = st.one_of(
    st.just({"type": "json_object"}),
    st.builds(
        lambda s: {"type": "json_schema", "json_schema": {"name": "x", "schema": s}}, schemas
    ),
    any_json,
)
sampling = {
    "max_tokens": st.one_of(st.integers(-2, 10), scalars),
    "temperature": st.one_of(st.floats(-1, 3), scalars),
    "top_p": st.one_of(st.floats(-0.5, 1.5), scalars),
    "top_k": st.one_of(st.integers(-2, 50), scalars),
    "seed": st.one_of(st.integers(-5, 2**40), scalars),
    "stop": st.one_of(texts, st.lists(texts, max_size=5), scalars),
    "presence_penalty": st.one_of(st.floats(-3, 3), scalars),
    "stream": st.booleans(),
    "stream_options": st.one_of(st.just({"include_usage": True}), any_json),
    "response_format": response_formats,
}
valid_sampling = {
    "max_tokens": st.integers(1, 6),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "top_k": st.integers(0, 50),
    "min_p": st.floats(0, 1),
    "seed": st.integers(0, 2**31),
    "stop": st.lists(st.text(min_size=1, max_size=8), max_size=4),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "stream": st.booleans(),
    "response_format": response_formats,
}
models = st.sampled_from(["gemma", "gemma", "nope", ""])
prompts = st.one_of(texts, st.lists(st.integers(-3, 300_000), max_size=8))
completion_body = st.fixed_dictionaries(
    {"model": models, "prompt": st.one_of(prompts, any_json)}, optional=sampling
)
valid_prompts = st.one_of(
    st.text(min_size=1, max_size=40), st.lists(st.integers(0, 262_143), min_size=1, max_size=8)
)
valid_completion_body = st.fixed_dictionaries(
    {"model": st.just("gemma"), "prompt": valid_prompts}, optional=valid_sampling
)
message = st.fixed_dictionaries(
    {
        "role": st.one_of(st.sampled_from(["system", "user", "assistant", "tool"]), scalars),
        "content": st.one_of(texts, any_json),
    }
)
turns = st.lists(texts, min_size=1, max_size=4).map(
    lambda contents: [
        {"role": "user" if i % 2 == 0 else "assistant", "content": c}
        for i, c in enumerate(contents)
    ]
)
chat_body = st.fixed_dictionaries(
    {"model": models, "messages": st.one_of(st.lists(message, max_size=4), any_json)},
    optional={**sampling, "max_completion_tokens": st.one_of(st.integers(-2, 10), scalars)},
)
valid_chat_body = st.fixed_dictionaries(
    {"model": st.just("gemma"), "messages": turns},
    optional=valid_sampling,
)
FUZZ = fuzz(60)


@pytest.fixture(scope="module")
def client(pytestconfig, tmp_path_factory):
    spec = llm_spec(gemma_file(pytestconfig))
    env = {"AIMASS_MAX_TOKENS_CEILING": "16"}
    with (
        run_server(tmp_path_factory.mktemp("llm-fuzz"), models=[spec], env=env) as server,
        httpx.Client(base_url=server, timeout=120) as c,
    ):
        yield c
        assert c.get("/v2/health/ready").status_code == 200, "the model must still serve"


def check(client: httpx.Client, path: str, body) -> None:
    with client.stream("POST", path, json=body) as r:
        text = r.read().decode()
    assert r.status_code < 500, (body, text)
    if r.status_code >= 400:
        error = r.json()["error"]
        assert isinstance(error["message"], str) and error["message"], (body, text)
    elif r.headers["content-type"].startswith("text/event-stream"):
        assert text.rstrip().endswith("data: [DONE]"), (body, text)


@FUZZ
@given(body=st.one_of(completion_body, valid_completion_body))
def test_completion_requests_never_give_5xx(client, body):
    check(client, "/v1/completions", body)


@FUZZ
@given(body=st.one_of(chat_body, valid_chat_body))
def test_chat_requests_never_give_5xx(client, body):
    check(client, "/v1/chat/completions", body)
