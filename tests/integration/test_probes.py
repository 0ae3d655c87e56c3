"""Health probes and readiness against a real server: ``/healthz`` and ``/v2/health/live``
(liveness), ``/health`` and ``/v2/health/ready`` (readiness), with keys required and not, and
what a loading or failed model does to them (``strict_readiness``), read with ``tritonclient``.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import tritonclient.http as triton

from aimass.registry import keys
from aimass.registry import models as registry
from aimass.spec import ModelSpec
from tests.conftest import ROOT, make_add_model, onnx_spec, run_server

LIVENESS = ("/healthz", "/v2/health/live")
READINESS = ("/health", "/v2/health/ready")
LOAD_S = 6.0


class _SlowNothing:
    """Unpickles by sleeping ``seconds`` and yields no model: a load seen as loading for that
    long, then failed."""

    def __init__(self, seconds: float):
        self.seconds = seconds

    def __reduce__(self):
        return (time.sleep, (self.seconds,))


def _url(home: Path) -> str:
    return f"sqlite:///{home / 'aimass.db'}"


def _register_unloadable(home: Path, name: str, source: Path, **spec) -> None:
    """Straight into the registry, marked loaded: registration would refuse such a model, so
    this is one that broke after it was registered."""
    home.mkdir(parents=True, exist_ok=True)
    registry.add_model(_url(home), ModelSpec(name=name, source=str(source), **spec), load=True)


def _statuses(server: str, paths: tuple[str, ...], **kw) -> set[int]:
    return {httpx.get(server + path, **kw).status_code for path in paths}


def _wait(check: Callable[[], object], timeout_s: float = 60) -> object:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if found := check():
            return found
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def _models_list(home: Path) -> dict[str, dict]:
    out = subprocess.run(
        [sys.executable, "-m", "aimass", "models", "list", "--json"],
        env={**os.environ, "AIMASS_HOME": str(home)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {e["name"]: e for e in json.loads(out.stdout)}


def test_a_failed_model_does_not_make_the_server_unready(tmp_path):
    home = tmp_path / "home"
    slow = tmp_path / "slow.pkl"
    slow.write_bytes(pickle.dumps(_SlowNothing(LOAD_S)))
    _register_unloadable(
        home, "slow", slow, runtime="tabular", task="classification", trust_pickle=True
    )
    add = onnx_spec("add", make_add_model(tmp_path / "add.onnx"))
    with run_server(tmp_path, [add], wait="live") as server:
        client = triton.InferenceServerClient(server.removeprefix("http://"))

        def model_ready() -> httpx.Response | None:
            r = httpx.get(f"{server}/v2/models/slow/ready")
            return r if r.status_code != 404 else None  # 404 until its load has begun

        loading = _wait(model_ready)
        assert loading.status_code == 400, loading.text
        assert loading.json() == {
            "name": "slow",
            "ready": False,
            "error": "model 'slow' is loading",
        }
        assert _statuses(server, READINESS) == {503}
        assert httpx.get(f"{server}/health").json() == {"ready": False}
        assert not client.is_server_ready() and not client.is_model_ready("slow")
        assert _statuses(server, LIVENESS) == {200} and client.is_server_live()
        assert httpx.get(f"{server}/healthz").json() == {"live": True}

        def failed() -> httpx.Response | None:
            r = httpx.get(f"{server}/v2/models/slow/versions/1/ready")
            return r if "failed" in r.text else None

        failure = _wait(failed, timeout_s=LOAD_S + 60)
        assert failure.status_code == 400
        assert failure.json()["error"].startswith("model 'slow' is failed: ")
        assert "not a model with predict()" in failure.json()["error"]
        assert httpx.get(f"{server}/v2/models/slow/ready").status_code == 400
        assert not client.is_model_ready("slow") and not client.is_model_ready("slow", "1")
        # the server serves everything else, so it stays in a load balancer's rotation
        assert _statuses(server, READINESS) == {200}
        assert client.is_server_ready() and client.is_model_ready("add")
        assert _statuses(server, LIVENESS) == {200}
        # and the failed model stays visible where an operator looks
        assert (
            'aimass_replicas_up{model="slow",version="1"} 0.0'
            in httpx.get(f"{server}/metrics").text
        )
        listed = _models_list(server.home)
        assert listed["slow"]["state"] == "failed"
        assert "predict()" in listed["slow"]["last_error"]
        index = httpx.post(f"{server}/v2/repository/index", json={}).json()
        assert {e["name"]: e["state"] for e in index} == {"add": "READY", "slow": "UNAVAILABLE"}


def test_strict_readiness_needs_every_model(tmp_path):
    home = tmp_path / "home"
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    _register_unloadable(home, "broken", broken, runtime="onnx")
    add = onnx_spec("add", make_add_model(tmp_path / "add.onnx"))
    env = {"AIMASS_STRICT_READINESS": "true"}
    with run_server(tmp_path, [add], env=env, wait="live") as server:
        _wait(lambda: "failed" in httpx.get(f"{server}/v2/models/broken/ready").text)
        time.sleep(0.5)  # a few reconcile rounds: it stays failed, and the server unready
        assert _statuses(server, READINESS) == {503}
        assert _statuses(server, LIVENESS) == {200}
        assert httpx.get(f"{server}/v2/models/add/ready").status_code == 200
        r = httpx.post(f"{server}/v2/repository/models/broken/unload")
        assert r.status_code == 200, r.text
        assert _statuses(server, READINESS) == {200}


@pytest.mark.parametrize("require_auth", [True, False])
def test_probes_answer_without_a_key(tmp_path, require_auth):
    home = tmp_path / "home"
    home.mkdir()
    _, admin = keys.create_key(_url(home), "admin", admin=True)
    args = ["--require-auth"] if require_auth else []
    add = onnx_spec("add", make_add_model(tmp_path / "add.onnx"))
    with run_server(tmp_path, [add], extra_args=args) as server:
        for headers in ({}, {"Authorization": "Bearer am-000000000000-" + "x" * 43}):
            assert _statuses(server, LIVENESS + READINESS, headers=headers) == {200}
        client = triton.InferenceServerClient(server.removeprefix("http://"))
        assert client.is_server_live() and client.is_server_ready()
        metrics = httpx.get(f"{server}/metrics")
        assert metrics.status_code == (401 if require_auth else 200)
        admin_header = {"Authorization": f"Bearer {admin}"}
        assert httpx.get(f"{server}/metrics", headers=admin_header).status_code == 200


def test_another_keys_usage_is_refused_with_its_own_code(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    _, user = keys.create_key(_url(home), "user")
    keys.create_key(_url(home), "other")
    with run_server(tmp_path, extra_args=["--require-auth"]) as server:
        headers = {"Authorization": f"Bearer {user}"}
        r = httpx.get(f"{server}/v1/usage", params={"key": "other"}, headers=headers)
        assert r.status_code == 403
        assert r.json()["error"] == {
            "message": "only an admin key may read another key's usage",
            "type": "permission_error",
            "param": "key",
            "code": "usage_not_allowed",
        }
        own = httpx.get(f"{server}/v1/usage", params={"key": "user"}, headers=headers)
        assert own.status_code == 200 and own.json()["object"] == "list"
