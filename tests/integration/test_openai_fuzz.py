"""Property-based fuzzing of /v1/embeddings and /v1/rerank: whatever a client sends, never a
5xx, and every refusal in OpenAI's error shape."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import run_server
from tests.factories_text import tiny_classifier, tiny_encoder
from tests.strategies import any_json, fuzz, scalars

texts = st.text(max_size=60)
token_ids = st.lists(st.integers(-5, 40_000), max_size=20)
inputs = st.one_of(
    texts, st.lists(texts, max_size=20), token_ids, st.lists(token_ids, max_size=4), any_json
)
models = st.sampled_from(["tiny", "tiny-rerank", "nope", "tiny:1", "tiny:0", "tiny:x", ""])
embedding_body = st.fixed_dictionaries(
    {"model": st.one_of(models, scalars), "input": inputs},
    optional={
        "encoding_format": st.one_of(st.sampled_from(["float", "base64", "int8"]), scalars),
        "dimensions": st.one_of(st.integers(-2, 1000), scalars),
        "truncate": st.one_of(st.booleans(), scalars),
        "user": scalars,
    },
)
rerank_body = st.fixed_dictionaries(
    {
        "model": st.one_of(models, scalars),
        "query": st.one_of(texts, scalars),
        "documents": st.one_of(
            st.lists(st.one_of(texts, st.fixed_dictionaries({"text": texts})), max_size=20),
            any_json,
        ),
    },
    optional={
        "top_n": st.one_of(st.integers(-3, 30), scalars),
        "return_documents": st.one_of(st.booleans(), scalars),
    },
)
FUZZ = fuzz(120)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("openai-fuzz")
    common = {"runtime": "transformers", "batching": {"max_batch_size": 8}}
    specs = [
        {"name": "tiny", "task": "embedding", "source": str(tiny_encoder(root / "e")), **common},
        {
            "name": "tiny-rerank",
            "task": "rerank",
            "source": str(tiny_classifier(root / "r")),
            **common,
        },
    ]
    env = {"AIMASS_MAX_ITEMS_PER_REQUEST": "16"}
    with (
        run_server(root, specs, env=env) as server,
        httpx.Client(base_url=server, timeout=60) as c,
    ):
        yield c
        assert c.get("/v2/health/ready").status_code == 200, "the models must still serve"


def check(r: httpx.Response, body) -> None:
    assert r.status_code < 500, (body, r.text)
    if r.status_code >= 400:
        error = r.json()["error"]
        assert isinstance(error["message"], str) and error["message"], (body, r.text)
        assert {"type", "param", "code"} <= error.keys()


@FUZZ
@given(body=embedding_body)
def test_embedding_requests_never_give_5xx(client, body):
    check(client.post("/v1/embeddings", json=body), body)


@FUZZ
@given(body=rerank_body)
def test_rerank_requests_never_give_5xx(client, body):
    check(client.post("/v1/rerank", json=body), body)


@FUZZ
@given(body=any_json, path=st.sampled_from(["/v1/embeddings", "/v1/rerank"]))
def test_arbitrary_json_never_gives_5xx(client, body, path):
    check(client.post(path, json=body), body)
