"""``aimass infer`` finds the server ``aimass serve`` starts (AIMASS_HOST / AIMASS_PORT, or
``--url``), sends ``AIMASS_API_KEY``, and says in one line which URL it tried when no server
answers (issue 16, item 7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT, free_port, make_add_model, run_server

DATA = json.dumps({"a": [[1, 2, 3, 4]], "b": [[1, 1, 1, 1]]})


def aimass(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIMASS_")}
    return subprocess.run(
        [sys.executable, "-m", "aimass", *args],
        env={**clean, "AIMASS_HOME": str(home), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode == 1, out.stdout
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


def test_infer_uses_aimass_port_and_url(tmp_path):
    model = {"name": "add", "runtime": "onnx", "source": str(make_add_model(tmp_path / "a.onnx"))}
    with run_server(tmp_path, [model], port_from_env=True) as server:
        out = aimass(server.home, "infer", "add", "--data", DATA, AIMASS_PORT=str(server.port))
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["outputs"][0]["data"] == [2, 3, 4, 5]
        out = aimass(server.home, "infer", "add", "--data", DATA, "--url", server, AIMASS_PORT="1")
        assert out.returncode == 0, out.stderr  # --url wins over the environment
        missing = one_line_error(
            aimass(server.home, "infer", "nope", "--data", DATA, AIMASS_PORT=str(server.port))
        )
        assert "404" in missing and "nope" in missing


def test_no_server_is_one_line_naming_the_url_it_tried(tmp_path):
    port = str(free_port())
    line = one_line_error(aimass(tmp_path, "infer", "add", "--data", DATA, AIMASS_PORT=port))
    assert f"http://127.0.0.1:{port}" in line and "aimass serve" in line
    line = one_line_error(
        aimass(tmp_path, "infer", "add", "--data", DATA, AIMASS_HOST="0.0.0.0", AIMASS_PORT=port)
    )
    assert f"http://127.0.0.1:{port}" in line  # a server bound to every address, on loopback
    line = one_line_error(
        aimass(tmp_path, "infer", "add", "--data", DATA, "--url", f"http://localhost:{port}")
    )
    assert f"http://localhost:{port}" in line


def test_api_key_comes_from_aimass_api_key(tmp_path):
    home = tmp_path / "home"
    created = aimass(home, "keys", "create", "--name", "ops", "--admin")
    key = created.stdout.strip().splitlines()[-1]
    model = {"name": "add", "runtime": "onnx", "source": str(make_add_model(tmp_path / "a.onnx"))}
    with run_server(tmp_path, [model], extra_args=["--require-auth"]) as server:
        refused = one_line_error(aimass(home, "infer", "add", "--data", DATA, "--url", server))
        assert "401" in refused
        out = aimass(home, "infer", "add", "--data", DATA, "--url", server, AIMASS_API_KEY=key)
        assert out.returncode == 0, out.stderr


def test_help_documents_url_and_environment(tmp_path):
    text = aimass(tmp_path, "infer", "--help", COLUMNS="200").stdout
    for needed in ("--url", "AIMASS_HOST", "AIMASS_PORT", "AIMASS_API_KEY"):
        assert needed in text, text
