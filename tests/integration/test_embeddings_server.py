"""/v1/embeddings and /v1/rerank against a real server, driven by the official openai SDK."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from aimass.provision.optimize import MEAN_COSINE_MIN, MIN_COSINE_MIN, build_int8, cosines
from aimass.spec import ModelSpec
from tests.conftest import run_server
from tests.factories_text import SENTENCES, reference_scores, tiny_classifier, tiny_encoder

MAX_ITEMS = 16


def _spec(name: str, path: Path, task: str = "embedding", **extra) -> dict:
    spec = {
        "name": name,
        "task": task,
        "runtime": "transformers",
        "source": str(path),
        "batching": {"max_batch_size": 8, "max_batch_tokens": 64},
    }
    return {**spec, **extra}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("text-models")
    encoder = tiny_encoder(root / "encoder", max_length=16)
    int8, gate = build_int8(ModelSpec(**_spec("tiny", encoder)), root / "int8")
    assert gate.passed
    classifier = tiny_classifier(root / "classifier", labels=["neg", "neu", "pos"])
    return {
        "encoder": encoder,
        "cross": tiny_classifier(root / "cross"),
        "int8": int8,
        "classifier": classifier,
    }


@pytest.fixture(scope="module")
def server(models, tmp_path_factory):
    specs = [
        _spec("tiny", models["encoder"]),
        _spec("tiny-mrl", models["encoder"], options={"supports_dimensions": True}),
        _spec("tiny-int8", models["encoder"], options={"onnx": str(models["int8"])}),
        _spec("tiny-rerank", models["cross"], task="rerank"),
        _spec("tiny-clf", models["classifier"], task="text-classification"),
    ]
    env = {"AIMASS_MAX_ITEMS_PER_REQUEST": str(MAX_ITEMS)}
    with run_server(tmp_path_factory.mktemp("srv"), models=specs, env=env) as base_url:
        yield base_url


@pytest.fixture(scope="module")
def reference(models) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(models["encoder"]), device="cpu").encode(SENTENCES)


@pytest.fixture
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)


def test_sdk_embeddings_equal_the_fp32_reference(client, reference):
    answer = client.embeddings.create(model="tiny", input=SENTENCES)  # the SDK asks for base64
    vectors = np.array([d.embedding for d in answer.data], dtype=np.float32)
    assert [d.index for d in answer.data] == list(range(len(SENTENCES)))
    assert cosines(vectors, reference).min() >= 0.9999
    assert answer.usage.prompt_tokens > len(SENTENCES) and answer.model == "tiny"


def test_float_and_base64_carry_the_same_values(server):
    body = {"model": "tiny", "input": SENTENCES[:3]}
    floats = httpx.post(f"{server}/v1/embeddings", json={**body, "encoding_format": "float"}).json()
    packed = httpx.post(
        f"{server}/v1/embeddings", json={**body, "encoding_format": "base64"}
    ).json()
    for f, p in zip(floats["data"], packed["data"], strict=True):
        decoded = np.frombuffer(base64.b64decode(p["embedding"]), dtype="<f4")
        np.testing.assert_array_equal(decoded, np.array(f["embedding"], dtype=np.float32))


def test_single_string_and_token_ids(client, server, reference):
    one = client.embeddings.create(model="tiny", input=SENTENCES[1], encoding_format="float")
    assert (
        len(one.data) == 1
        and cosines(np.array([one.data[0].embedding]), reference[1:2])[0] >= 0.9999
    )
    ids = httpx.post(f"{server}/v1/embeddings", json={"model": "tiny", "input": [[40, 41], [42]]})
    assert ids.status_code == 200 and len(ids.json()["data"]) == 2
    assert ids.json()["usage"]["prompt_tokens"] == 7  # [CLS] ... [SEP] around each


def test_int8_variant_is_within_the_gate(client, reference):
    answer = client.embeddings.create(model="tiny-int8", input=SENTENCES)
    cos = cosines(np.array([d.embedding for d in answer.data]), reference)
    assert cos.mean() >= MEAN_COSINE_MIN and cos.min() >= MIN_COSINE_MIN


def test_dimensions_for_a_model_that_declares_them(client):
    answer = client.embeddings.create(model="tiny-mrl", input="hello world", dimensions=8)
    vector = np.array(answer.data[0].embedding)
    assert vector.shape == (8,) and abs(np.linalg.norm(vector) - 1) < 1e-5


def test_truncate_cuts_an_over_long_input(server):
    body = {"model": "tiny", "input": "dogs " * 40, "truncate": True}
    answer = httpx.post(f"{server}/v1/embeddings", json=body).json()
    assert answer["usage"]["prompt_tokens"] == 16


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "tiny", "input": "dogs " * 40}, 400, "limit of 16 (max_length)"),
        ({"model": "tiny", "input": ["ok", "dogs " * 40]}, 400, "input[1] has 42 tokens"),
        ({"model": "tiny", "input": []}, 400, "empty"),
        ({"model": "tiny", "input": ""}, 400, "empty"),
        ({"model": "tiny", "input": ["a", 1]}, 400, "input"),
        ({"model": "tiny", "input": [[999999]]}, 400, "vocabulary"),
        ({"model": "tiny", "input": ["a"] * (MAX_ITEMS + 1)}, 413, "max_items_per_request"),
        ({"model": "tiny", "input": "a", "dimensions": 8}, 400, "dimensions"),
        ({"model": "tiny-mrl", "input": "a", "dimensions": 999}, 400, "larger"),
        ({"model": "tiny", "input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"model": "tiny-rerank", "input": "a"}, 400, "task 'rerank'"),
        ({"model": "nope", "input": "a"}, 404, "nope"),
        ({"model": "tiny:x", "input": "a"}, 400, "version"),
        ({"input": "a"}, 400, "model"),
    ],
)
def test_bad_embedding_requests(server, body, status, needle):
    response = httpx.post(f"{server}/v1/embeddings", json=body)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]["message"]


def test_a_bad_request_does_not_fail_its_batch_neighbours(server):
    import concurrent.futures

    bodies = [{"model": "tiny", "input": "dogs " * 40}] + [
        {"model": "tiny", "input": s} for s in SENTENCES
    ]
    with concurrent.futures.ThreadPoolExecutor(len(bodies)) as pool:
        codes = list(
            pool.map(lambda b: httpx.post(f"{server}/v1/embeddings", json=b).status_code, bodies)
        )
    assert codes == [400] + [200] * len(SENTENCES)


def test_rerank_orders_by_the_models_own_scores(server, models):
    query = "what is the capital of france?"
    body = {
        "model": "tiny-rerank",
        "query": query,
        "documents": SENTENCES,
        "return_documents": True,
    }
    answer = httpx.post(f"{server}/v1/rerank", json=body).json()
    logits = reference_scores(models["cross"], [(query, d) for d in SENTENCES])[:, 0]
    assert [r["index"] for r in answer["results"]] == np.argsort(-logits, kind="stable").tolist()
    scores = [r["relevance_score"] for r in answer["results"]]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(
        sorted(scores, reverse=True), np.sort(1 / (1 + np.exp(-logits)))[::-1], atol=1e-5
    )
    assert all(r["document"]["text"] == SENTENCES[r["index"]] for r in answer["results"])
    assert answer["usage"]["prompt_tokens"] > 0


def test_rerank_top_n_and_document_objects(server):
    documents = [{"text": s} for s in SENTENCES]
    body = {"model": "tiny-rerank", "query": "dogs", "documents": documents, "top_n": 3}
    answer = httpx.post(f"{server}/v1/rerank", json=body).json()
    assert len(answer["results"]) == 3 and "document" not in answer["results"][0]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"model": "tiny-rerank", "query": "q", "documents": []}, 400, "documents"),
        ({"model": "tiny-rerank", "query": "", "documents": ["d"]}, 400, "query"),
        ({"model": "tiny-rerank", "query": "q", "documents": ["d"], "top_n": 0}, 400, "top_n"),
        (
            {"model": "tiny-rerank", "query": "q", "documents": ["d"] * (MAX_ITEMS + 1)},
            413,
            "max_items_per_request",
        ),
        ({"model": "tiny", "query": "q", "documents": ["d"]}, 400, "task 'embedding'"),
    ],
)
def test_bad_rerank_requests(server, body, status, needle):
    response = httpx.post(f"{server}/v1/rerank", json=body)
    assert response.status_code == status, response.text
    assert needle in response.json()["error"]["message"]


def test_text_classification_over_v2(server):
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": SENTENCES[:2]}]}
    answer = httpx.post(f"{server}/v2/models/tiny-clf/infer", json=body).json()
    outputs = {o["name"]: o for o in answer["outputs"]}
    scores = np.array(outputs["scores"]["data"]).reshape(outputs["scores"]["shape"])
    assert scores.shape == (2, 3) and np.allclose(scores.sum(1), 1, atol=1e-5)
    assert outputs["label"]["data"] == [["neg", "neu", "pos"][i] for i in scores.argmax(1)]


@pytest.mark.parametrize("path", ["/v1/embeddings", "/v1/rerank"])
def test_a_body_that_is_not_json_is_a_400(server, path):
    response = httpx.post(
        f"{server}{path}", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert (
        response.status_code == 400 and response.json()["error"]["type"] == "invalid_request_error"
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/embeddings", {"model": "tiny", "input": ["a", "b"]}),
        ("/v1/rerank", {"model": "tiny-rerank", "query": "q", "documents": ["a", "b"]}),
    ],
)
def test_request_timeout_header(server, path, body):
    """A deadline no batch can meet is a 504 naming the header; a roomy one changes nothing."""
    late = httpx.post(server + path, json=body, headers={"Request-Timeout": "0.000001"})
    assert late.status_code == 504
    err = late.json()["error"]
    assert err["type"] == "timeout_error" and "Request-Timeout" in err["message"]
    assert httpx.post(server + path, json=body, headers={"Request-Timeout": "30"}).is_success
    bad = httpx.post(server + path, json=body, headers={"Request-Timeout": "never"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "Request-Timeout"
