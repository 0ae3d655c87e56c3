"""The Open Inference Protocol against a real server, with the official Triton client."""

from __future__ import annotations

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import make_add_model, make_identity_text_model, onnx_spec, run_server


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("v2")
    models = [
        onnx_spec("add", make_add_model(tmp / "add.onnx"), batching={"max_batch_size": 16}),
        onnx_spec("echo", make_identity_text_model(tmp / "echo.onnx")),
    ]
    env = {"AIMASS_MAX_BODY_BYTES": "200000", "AIMASS_MAX_REQUEST_ROWS": "64"}
    with run_server(tmp, models, env=env) as srv:
        yield srv


@pytest.fixture()
def client(server):
    c = triton.InferenceServerClient(url=server.removeprefix("http://"))
    yield c
    c.close()


def test_live_ready_and_server_metadata(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "aimass"
    assert "binary_tensor_data" in meta["extensions"]


def test_model_metadata_comes_from_the_model(client):
    assert client.is_model_ready("add")
    assert client.is_model_ready("add", "1")
    meta = client.get_model_metadata("add")
    assert meta["platform"] == "onnx"
    assert {i["name"]: (i["datatype"], i["shape"]) for i in meta["inputs"]} == {
        "a": ("FP32", [-1, 4]),
        "b": ("FP32", [-1, 4]),
    }
    assert [o["name"] for o in meta["outputs"]] == ["sum", "diff"]


@pytest.mark.parametrize("binary", [False, True])
def test_infer_json_and_binary(client, binary):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    b = np.ones((3, 4), dtype=np.float32)
    inputs = [triton.InferInput("a", [3, 4], "FP32"), triton.InferInput("b", [3, 4], "FP32")]
    inputs[0].set_data_from_numpy(a, binary_data=binary)
    inputs[1].set_data_from_numpy(b, binary_data=binary)
    outputs = [triton.InferRequestedOutput("diff", binary_data=binary)]
    result = client.infer("add", inputs, outputs=outputs, request_id="r-1")
    np.testing.assert_array_equal(result.as_numpy("diff"), a - b)
    assert result.as_numpy("sum") is None, "only the requested output is returned"
    assert result.get_response()["id"] == "r-1"


def test_bytes_tensors_round_trip(client):
    words = np.array(["hello", "世界", ""], dtype=object)
    for binary in (False, True):
        inp = triton.InferInput("text", [3], "BYTES")
        inp.set_data_from_numpy(words, binary_data=binary)
        out = client.infer("echo", [inp]).as_numpy("echo")
        assert [x.decode() if isinstance(x, bytes) else x for x in out] == list(words)


def test_parameters_are_echoed_and_versions_addressable(server):
    body = {
        "parameters": {"trace": "abc"},
        "inputs": [
            {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [[1, 2, 3, 4]]},
            {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]},
        ],
    }
    r = httpx.post(f"{server}/v2/models/add/versions/1/infer", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["parameters"] == {"trace": "abc"}
    assert out["model_version"] == "1"
    assert out["outputs"][0] == {
        "name": "sum",
        "datatype": "FP32",
        "shape": [1, 4],
        "data": [2.0, 3.0, 4.0, 5.0],
    }


def _post(server, path, **kw):
    return httpx.post(server + path, **kw)


def _good(**over):
    body = {
        "inputs": [
            {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
            {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        ]
    }
    body["inputs"][0].update(over)
    return body


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (_good(name="nope"), 400, "unknown input 'nope'"),
        (_good(shape=[1, 5], data=[1] * 5), 400, "does not match the model's [-1, 4]"),
        (_good(datatype="INT32"), 400, "datatype INT32 does not match"),
        (_good(data=[1, 2, 3]), 400, "3 elements given"),
        (_good(data=["x", 1, 2, 3]), 400, "must be numbers"),
        (_good(datatype="FOO"), 400, "unknown datatype"),
        ({"inputs": []}, 400, "inputs"),
        ({"inputs": [{"name": "a"}]}, 400, "shape"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_problem(server, body, status, words):
    r = _post(server, "/v2/models/add/infer", json=body)
    assert r.status_code == status, r.text
    assert words in r.json()["error"]


def test_malformed_json_unknown_model_and_version(server):
    r = _post(server, "/v2/models/add/infer", content=b"{not json")
    assert r.status_code == 400 and "not valid JSON" in r.json()["error"]
    r = _post(server, "/v2/models/ghost/infer", json=_good())
    assert r.status_code == 404 and "ghost" in r.json()["error"]
    r = _post(server, "/v2/models/add/versions/7/infer", json=_good())
    assert r.status_code == 404 and "version 7" in r.json()["error"]
    r = httpx.get(f"{server}/v2/models/add/versions/x")
    assert r.status_code == 400


def test_body_over_the_limit_is_413_naming_the_setting(server):
    r = _post(
        server,
        "/v2/models/add/infer",
        content=b" " * 300_000,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 413
    assert "max_body_bytes" in r.json()["error"]


def test_triton_client_raises_on_errors(client):
    inp = triton.InferInput("a", [1, 4], "FP32")
    inp.set_data_from_numpy(np.zeros((1, 4), np.float32))
    with pytest.raises(InferenceServerException, match="missing inputs"):
        client.infer("add", [inp])


def test_repository_index_and_openai_model_list(server):
    index = _post(server, "/v2/repository/index", json={}).json()
    assert {(m["name"], m["version"], m["state"]) for m in index} == {
        ("add", "1", "READY"),
        ("echo", "1", "READY"),
    }
    models = httpx.get(f"{server}/v1/models").json()
    assert models["object"] == "list"
    assert {m["id"] for m in models["data"]} == {"add", "echo"}
    assert all(m["object"] == "model" for m in models["data"])


def _rows_body(a: np.ndarray) -> dict:
    n = len(a)
    return {
        "inputs": [
            {"name": "a", "shape": [n, 4], "datatype": "FP32", "data": a.ravel().tolist()},
            {"name": "b", "shape": [n, 4], "datatype": "FP32", "data": [0.0] * (n * 4)},
        ],
        "outputs": [{"name": "sum"}],
    }


def test_large_request_is_split_across_batches(server):
    n = 40  # max_batch_size is 16: three batches
    a = np.random.default_rng(1).standard_normal((n, 4)).astype(np.float32)
    r = _post(server, "/v2/models/add/infer", json=_rows_body(a))
    assert r.status_code == 200, r.text
    got = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(n, 4)
    np.testing.assert_allclose(got, a, rtol=1e-6)


def test_more_rows_than_the_limit_is_413_naming_the_setting(server):
    r = _post(server, "/v2/models/add/infer", json=_rows_body(np.zeros((65, 4), np.float32)))
    assert r.status_code == 413, r.text
    assert "65 rows" in r.json()["error"] and "max_request_rows" in r.json()["error"]


def test_metrics_report_requests_latency_batches_and_replicas(server, client):
    inp = [triton.InferInput("text", [1], "BYTES")]
    inp[0].set_data_from_numpy(np.array(["m"], dtype=object))
    client.infer("echo", inp)
    text = httpx.get(f"{server}/metrics").text
    for needle in (
        'aimass_requests_total{model="echo",status="200",version="1"}',
        'aimass_request_latency_seconds_bucket{le="0.001",model="echo",stage="queue",version="1"}',
        'aimass_request_latency_seconds_count{model="echo",stage="compute",version="1"}',
        'aimass_batch_size_count{model="echo",version="1"}',
        'aimass_queue_depth{model="echo",version="1"}',
        'aimass_replicas_up{model="echo",version="1"} 1.0',
    ):
        assert needle in text, needle


def test_cli_infer_against_the_running_server(server):
    import json
    import subprocess
    import sys

    data = json.dumps({"a": [[1, 2, 3, 4]], "b": [[1, 1, 1, 1]]})
    out = subprocess.run(
        [sys.executable, "-m", "aimass", "infer", "add", "--data", data, "--url", server],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    outputs = {o["name"]: o["data"] for o in json.loads(out.stdout)["outputs"]}
    assert outputs["sum"] == [2.0, 3.0, 4.0, 5.0]
    bad = subprocess.run(
        [sys.executable, "-m", "aimass", "infer", "add", "--data", '{"a": [[1]]}', "--url", server],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 1 and "shape" in bad.stderr  # errors go to stderr, one line
