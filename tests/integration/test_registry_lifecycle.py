"""The registry survives restarts, and the CLI changes a running server."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import httpx

from aimass.registry import models as registry
from aimass.spec import ModelSpec
from tests.conftest import ROOT, make_add_model, run_server

BODY = {
    "inputs": [
        {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]},
    ]
}


def cli(home, *args):
    env = {**os.environ, "AIMASS_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "aimass", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def wait_status(url, status, method="post", timeout=30, **kw):
    end = time.monotonic() + timeout
    while True:
        r = getattr(httpx, method)(url, **kw)
        if r.status_code == status or time.monotonic() > end:
            return r
        time.sleep(0.1)


def test_cli_changes_reach_a_running_server_and_survive_restarts(tmp_path):
    model = make_add_model(tmp_path / "add.onnx")
    home = tmp_path / "home"
    with run_server(tmp_path) as server:
        added = cli(
            home,
            "models",
            "add",
            "adder",
            "--runtime",
            "onnx",
            "--source",
            str(model),
            "--max-batch-size",
            "8",
            "--load",
        )
        assert added.returncode == 0, added.stderr
        r = wait_status(f"{server}/v2/models/adder/infer", 200, json=BODY)
        assert r.status_code == 200, r.text
        # A second version registered but not loaded does not take traffic.
        assert (
            cli(
                home, "models", "add", "adder", "--runtime", "onnx", "--source", str(model)
            ).returncode
            == 0
        )
        listing = cli(home, "models", "list")
        assert "adder" in listing.stdout and "loaded" in listing.stdout

    with run_server(tmp_path) as server:
        r = httpx.post(f"{server}/v2/models/adder/infer", json=BODY)
        assert r.status_code == 200 and r.json()["model_version"] == "1"
        assert cli(home, "models", "unload", "adder").returncode == 0
        r = wait_status(f"{server}/v2/models/adder/infer", 404, json=BODY)
        assert r.status_code == 404

    with run_server(tmp_path) as server:
        assert httpx.get(f"{server}/v1/models").json()["data"] == []
        assert cli(home, "models", "load", "adder", "--version", "2").returncode == 0
        r = wait_status(f"{server}/v2/models/adder/infer", 200, json=BODY)
        assert r.json()["model_version"] == "2"


def test_invalid_specs_are_refused_naming_the_field(tmp_path):
    model = make_add_model(tmp_path / "add.onnx")
    out = cli(
        tmp_path / "home",
        "models",
        "add",
        "bad",
        "--runtime",
        "onnx",
        "--source",
        str(model),
        "--max-batch-size",
        "0",
    )
    assert out.returncode != 0
    assert "batching.max_batch_size" in out.stderr
    out = cli(
        tmp_path / "home", "models", "add", "bad", "--runtime", "tensorflow", "--source", str(model)
    )
    assert out.returncode != 0 and "runtime" in out.stderr


def test_model_that_cannot_load_shows_its_error(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    # Registration refuses such a file (test_model_validation); this one broke after it.
    (tmp_path / "home").mkdir()
    spec = ModelSpec(name="broken", runtime="onnx", source=str(broken))
    registry.add_model(f"sqlite:///{tmp_path / 'home' / 'aimass.db'}", spec, load=True)
    with run_server(tmp_path, wait="live") as server:

        def state():
            data = httpx.get(f"{server}/v1/admin/models").json()["data"]
            return data[0] if data and data[0]["state"] == "failed" else None

        end = time.monotonic() + 30
        while not state() and time.monotonic() < end:
            time.sleep(0.1)
        entry = state()
        assert entry is not None and "failed to load" in entry["last_error"]
        r = httpx.post(f"{server}/v2/models/broken/infer", json=BODY)
        assert r.status_code == 503 and "failed" in r.json()["error"]
        ready = httpx.get(f"{server}/v2/models/broken/ready")
        assert ready.status_code == 400 and "failed to load" in ready.json()["error"]
        # a failed model does not hold the server back (strict_readiness is off)
        assert httpx.get(f"{server}/v2/health/ready").status_code == 200
        assert httpx.get(f"{server}/v2/health/live").status_code == 200
