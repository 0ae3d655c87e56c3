"""Start-up says what it does (issue 16, item 12): with ``serve``'s default log level, each
model's load start, its readiness (or failure) with the time it took, and the moment every
model is served; the int8 build logs each step with its time."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import time

import httpx
import yaml

from aimass.provision import optimize
from aimass.spec import ModelSpec
from tests.conftest import ROOT, free_port, make_add_model, run_server, stop_server
from tests.factories_text import tiny_encoder


def test_default_level_logs_each_load_and_readiness_with_times(tmp_path):
    models = [
        {"name": name, "runtime": "onnx", "source": str(make_add_model(tmp_path / f"{name}.onnx"))}
        for name in ("first", "second")
    ]
    config = tmp_path / "models.yaml"
    config.write_text(yaml.safe_dump({"models": models}))
    port = free_port()
    env = {**os.environ, "AIMASS_HOME": str(tmp_path / "home")}
    command = [sys.executable, "-m", "aimass", "serve", "--no-builtins", "--port", str(port)]
    out = (tmp_path / "server.log").open("w+")
    proc = subprocess.Popen(
        [*command, "--config", str(config)], env=env, cwd=ROOT, stdout=out, stderr=out
    )
    try:
        end = time.monotonic() + 120
        while "model version(s) ready in" not in (log := (tmp_path / "server.log").read_text()):
            assert proc.poll() is None and time.monotonic() < end, log
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/v2/health/ready").status_code == 200
    finally:
        stop_server(proc)
        out.close()
    for name in ("first", "second"):
        assert re.search(rf"INFO: +trial load of model '{name}' version 1 passed in \d+\.\d s", log)
        assert f"INFO:     loading model '{name}' version 1 (runtime onnx, 1 replica(s))" in log
        assert re.search(rf"INFO: +model '{name}' version 1 ready in \d+\.\d s", log)
    assert "2 model version(s) to load" in log
    assert re.search(r"all 2 model version\(s\) ready in \d+\.\d s", log)


def test_a_model_that_fails_to_load_is_logged_with_its_error(tmp_path):
    source = make_add_model(tmp_path / "add.onnx")
    with run_server(tmp_path, [{"name": "add", "runtime": "onnx", "source": str(source)}]):
        pass
    stored = tmp_path / "home" / "models" / "add" / "1" / "add.onnx"
    stored.write_bytes(stored.read_bytes() + b"\0")
    with run_server(tmp_path, extra_args=["--log-level", "info"], wait="live") as server:
        end = time.monotonic() + 60
        while "not ready: add:1" not in server.log():
            assert time.monotonic() < end, server.log()
            time.sleep(0.1)
        log = server.log()
    assert re.search(
        r"ERROR: +model 'add' version 1 failed to load after \d+\.\d s: .*changed", log
    )
    assert re.search(r"WARNING: +0 of 1 model version\(s\) ready after \d+\.\d s", log)


def test_int8_build_logs_each_step_with_its_time(tmp_path, caplog):
    logger = logging.getLogger("aimass")
    logger.addHandler(caplog.handler)  # even if ``serve`` ran in this process and set it up
    caplog.handler.setLevel(logging.INFO)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not .level: it clears the cached verdicts
    try:
        spec = ModelSpec(
            name="tiny",
            task="embedding",
            runtime="transformers",
            source=str(tiny_encoder(tmp_path / "tiny", max_length=32)),
        )
        optimize.build_int8(spec, tmp_path / "int8")
    finally:
        logger.removeHandler(caplog.handler)
        logger.setLevel(level)
    for step in ("exporting 'tiny' to ONNX", "quantizing to int8", "quality gate"):
        assert re.search(rf"{re.escape(step)}.*: done in \d+\.\d s", caplog.text), caplog.text
    assert "int8 variant passed" in caplog.text or "int8 variant refused" in caplog.text
