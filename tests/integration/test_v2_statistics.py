"""Triton's statistics extension against a real server, read with ``tritonclient``'s
``get_inference_statistics``: the counts follow the requests sent, in Triton's JSON shape."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from aimass.registry import keys
from tests.conftest import make_add_model, make_identity_text_model, onnx_spec, run_server

DURATIONS = {
    "success", "fail", "queue", "compute_input", "compute_infer", "compute_output",
    "cache_hit", "cache_miss",
}  # fmt: skip


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stats")
    home = tmp / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'aimass.db'}"
    _, admin = keys.create_key(url, "admin", admin=True)
    _, scoped = keys.create_key(url, "scoped", models=frozenset({"echo"}))
    models = [
        onnx_spec("add", make_add_model(tmp / "add.onnx"), batching={"max_batch_size": 4}),
        onnx_spec("echo", make_identity_text_model(tmp / "echo.onnx")),
    ]
    with run_server(tmp, models, extra_args=["--require-auth"]) as server:
        yield {
            "server": server,
            "client": triton.InferenceServerClient(server.removeprefix("http://")),
            "admin": {"Authorization": f"Bearer {admin}"},
            "scoped": {"Authorization": f"Bearer {scoped}"},
        }


def _headers(env, key: str = "admin") -> dict[str, str]:
    """A fresh copy each time: tritonclient's ``infer`` adds its own headers to the dict."""
    return dict(env[key])


def _inputs(rows_a: int, rows_b: int | None = None) -> list[triton.InferInput]:
    out = []
    for name, rows in (("a", rows_a), ("b", rows_a if rows_b is None else rows_b)):
        tensor = triton.InferInput(name, [rows, 4], "FP32")
        tensor.set_data_from_numpy(np.ones((rows, 4), np.float32))
        out.append(tensor)
    return out


def _stats(env, name: str = "", version: str = "", key: str = "admin") -> list[dict]:
    answer = env["client"].get_inference_statistics(name, version, headers=_headers(env, key))
    return answer["model_stats"]


def test_statistics_count_what_was_served(env):
    client = env["client"]
    extensions = client.get_server_metadata(headers=_headers(env))["extensions"]
    assert "statistics" in extensions
    (before,) = _stats(env, "add")
    assert before["name"] == "add" and before["version"] == "1"
    assert before["inference_count"] == before["execution_count"] == 0
    assert set(before["inference_stats"]) == DURATIONS
    assert all(v == {"count": 0, "ns": 0} for v in before["inference_stats"].values())

    started_ms = time.time() * 1000
    for _ in range(3):
        client.infer("add", _inputs(2), headers=_headers(env))
    client.infer("add", _inputs(10), headers=_headers(env))  # split into batches of 4, 4 and 2 rows
    with pytest.raises(InferenceServerException, match="same number of rows"):
        client.infer("add", _inputs(1, 2), headers=_headers(env))

    (stats,) = _stats(env, "add", "1")
    inference = stats["inference_stats"]
    assert inference["success"]["count"] == 4 and inference["success"]["ns"] > 0
    assert inference["fail"]["count"] == 1
    assert stats["inference_count"] == 3 * 2 + 10
    assert inference["queue"]["count"] == 3 + 3  # batch entries: the split request has three
    assert inference["compute_infer"]["count"] == 6 and inference["compute_infer"]["ns"] > 0
    assert 3 <= stats["execution_count"] <= 6
    batches = stats["batch_stats"]
    assert sum(b["compute_infer"]["count"] for b in batches) == stats["execution_count"]
    assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in batches) == 16
    assert all(b["batch_size"] <= 4 for b in batches)
    assert started_ms <= stats["last_inference"] <= time.time() * 1000
    assert _stats(env, "add") == [stats]


def test_statistics_of_every_model_and_by_key(env):
    everything = {(s["name"], s["version"]) for s in _stats(env)}
    assert everything == {("add", "1"), ("echo", "1")}
    server = env["server"]
    plain = httpx.get(f"{server}/v2/models/stats", headers=env["admin"]).json()
    assert {s["name"] for s in plain["model_stats"]} == {"add", "echo"}
    # a key sees the statistics of the models it may use, and is refused the others
    assert [s["name"] for s in _stats(env, key="scoped")] == ["echo"]
    with pytest.raises(InferenceServerException, match="may not use model 'add'"):
        _stats(env, "add", key="scoped")
    r = httpx.get(f"{server}/v2/models/stats")
    assert r.status_code == 401


def test_statistics_of_models_not_loaded_are_errors(env):
    server = env["server"]
    for path, says in (
        ("/v2/models/nope/stats", "model 'nope' is not loaded"),
        ("/v2/models/add/versions/2/stats", "model 'add' version 2 is not loaded"),
        ("/v2/models/add/versions/x/stats", "model version must be a positive integer"),
    ):
        r = httpx.get(server + path, headers=_headers(env))
        assert r.status_code in (400, 404), (path, r.text)
        assert says in r.json()["error"]
    with pytest.raises(InferenceServerException, match="not loaded"):
        _stats(env, "nope")
