"""What a request needs to be admitted (issue 16): a request split into more chunks than
``limits.max_queue`` counts once against it, so an idle model serves it; only a request over
``max_request_rows`` is impossible, and that is a 413 naming the setting, never a 429. A
payload that cannot cross to a replica is that request's 400, found before batching.

Real server, real clients: tritonclient and httpx for /v2, the openai SDK for /v1.
"""

from __future__ import annotations

import httpx
import numpy as np
import openai
import pytest
import tritonclient.http as triton

from tests.conftest import make_add_model, onnx_spec, run_server
from tests.factories_text import tiny_encoder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bulk")
    add = make_add_model(tmp / "add.onnx")
    specs = [
        onnx_spec("add", add),  # the defaults: 8 rows a batch, 256 requests in the queue
        onnx_spec("add-tight", add, batching={"max_batch_size": 1}, limits={"max_queue": 1}),
        {
            "name": "tiny",
            "task": "embedding",
            "runtime": "transformers",
            "source": str(tiny_encoder(tmp / "encoder", max_length=16)),
            "batching": {"max_batch_size": 1},
            "limits": {"max_queue": 1},
        },
    ]
    with run_server(tmp, specs) as url:
        yield url


def _infer(server, model: str, a: np.ndarray) -> httpx.Response:
    """``a + 0`` through the JSON form of v2 infer."""
    n = len(a)
    body = {
        "inputs": [
            {"name": "a", "shape": [n, 4], "datatype": "FP32", "data": a.ravel().tolist()},
            {"name": "b", "shape": [n, 4], "datatype": "FP32", "data": [0.0] * (n * 4)},
        ],
        "outputs": [{"name": "sum"}],
    }
    return httpx.post(f"{server}/v2/models/{model}/infer", json=body, timeout=60)


def _queue_depth(server, model: str) -> float:
    for line in httpx.get(f"{server}/metrics").text.splitlines():
        if line.startswith("aimass_queue_depth{") and f'model="{model}"' in line:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no aimass_queue_depth for {model}")


@pytest.mark.parametrize("rows", [2056, 4096])
def test_more_chunks_than_queue_places_are_served_by_an_idle_model(server, rows):
    """2,056 rows are 257 chunks of 8 against a queue of 256: one request, admitted."""
    client = triton.InferenceServerClient(server.removeprefix("http://"))
    a = np.random.default_rng(rows).standard_normal((rows, 4)).astype(np.float32)
    inputs = [triton.InferInput("a", [rows, 4], "FP32"), triton.InferInput("b", [rows, 4], "FP32")]
    inputs[0].set_data_from_numpy(a)
    inputs[1].set_data_from_numpy(np.ones_like(a))
    result = client.infer("add", inputs, outputs=[triton.InferRequestedOutput("sum")])
    np.testing.assert_allclose(result.as_numpy("sum"), a + 1, rtol=1e-6)
    assert _queue_depth(server, "add") == 0


def test_a_request_over_max_request_rows_is_413_not_429(server):
    r = _infer(server, "add", np.zeros((4097, 4), np.float32))
    assert r.status_code == 413, r.text
    assert "4097 rows" in r.json()["error"] and "max_request_rows" in r.json()["error"]
    assert "retry-after" not in r.headers


def test_one_queue_place_and_one_row_a_batch_still_serve_several_rows(server):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    for _ in range(3):
        r = _infer(server, "add-tight", a)
        assert r.status_code == 200, r.text
        assert np.array(r.json()["outputs"][0]["data"]).reshape(3, 4).tolist() == a.tolist()


def test_embeddings_of_two_inputs_with_one_queue_place(server):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0)
    for _ in range(3):
        answer = client.embeddings.create(model="tiny", input=["a", "b"])
        assert [d.index for d in answer.data] == [0, 1]
        assert all(len(d.embedding) == 32 for d in answer.data)
    assert _queue_depth(server, "tiny") == 0


def test_token_ids_a_replica_cannot_take_are_a_400_for_that_request_only(server):
    """Ids beyond int64 cannot cross to the worker: refused before batching (it used to be a
    500 for the whole batch), and the model goes on serving."""
    r = httpx.post(
        f"{server}/v1/embeddings", json={"model": "tiny", "input": [[1, 2**63]]}, timeout=60
    )
    assert r.status_code == 400, r.text
    assert "9223372036854775807" in r.json()["error"]["message"]
    ok = httpx.post(f"{server}/v1/embeddings", json={"model": "tiny", "input": [[1, 2]]})
    assert ok.status_code == 200, ok.text
