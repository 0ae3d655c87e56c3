"""The registry owns what it serves (issue 16, item 5): a version's files are copied (or
hard-linked, or referenced with ``--no-copy``) into ``AIMASS_HOME/models/<name>/<version>/``
with their sha256, checked at every load; a changed file is refused with both digests; a
version's files never change silently."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from tests.conftest import ROOT, make_add_model, make_mlp_model, run_server
from tests.factories_text import tiny_encoder

BODY = {
    "inputs": [
        {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]},
    ]
}


def cli(home: Path, *args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "aimass", *args],
        env={**os.environ, "AIMASS_HOME": str(home), **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def cli_fails(home: Path, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "aimass", *args],
        env={**os.environ, "AIMASS_HOME": str(home)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 1, out.stdout
    return out.stderr


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def entry(home: Path, name: str, version: int = 1) -> dict:
    return json.loads(cli(home, "models", "show", name, "--version", str(version)))


def wait_failed(server: str, name: str, timeout_s: float = 60) -> dict:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        for item in httpx.get(f"{server}/v1/admin/models").json()["data"]:
            if item["name"] == name and item["state"] == "failed":
                return item
        time.sleep(0.1)
    raise AssertionError(f"{name} did not fail")


def test_served_from_the_registrys_copy_and_an_edited_copy_is_refused(tmp_path):
    original = make_add_model(tmp_path / "mine" / "add.onnx")
    other = make_add_model(tmp_path / "other.onnx")
    home = tmp_path / "home"
    cli(home, "models", "add", "add", "--runtime", "onnx", "--source", str(original), "--load")
    cli(home, "models", "add", "other", "--runtime", "onnx", "--source", str(other), "--load")
    stored = home / "models" / "add" / "1" / "add.onnx"
    spec = entry(home, "add")["spec"]
    assert spec["source"] == str(stored) and spec["sha256"] == {"source": sha256(original)}
    assert stored.stat().st_ino != original.stat().st_ino  # a copy: small files are copied
    original.unlink()  # the user's file moves away: the version does not care
    with run_server(tmp_path) as server:
        assert httpx.post(f"{server}/v2/models/add/infer", json=BODY).status_code == 200
    registered = sha256(stored)
    stored.write_bytes(stored.read_bytes() + b"\0")  # edited behind the registry's back
    with run_server(tmp_path, wait="live") as server:
        failed = wait_failed(server, "add")
        message = failed["last_error"]
        assert str(stored) in message and registered in message and sha256(stored) in message
        r = httpx.post(f"{server}/v2/models/add/infer", json=BODY)
        assert r.status_code == 503 and "changed since it was registered" in r.json()["error"]
        end = time.monotonic() + 60  # the other model serves, whatever happens to this one
        while httpx.get(f"{server}/v2/models/other/ready").status_code != 200:
            assert time.monotonic() < end
            time.sleep(0.1)
        assert httpx.post(f"{server}/v2/models/other/infer", json=BODY).status_code == 200
        end = time.monotonic() + 10  # the server writes the state to the registry
        while "failed" not in (listing := cli(home, "models", "list")):
            assert time.monotonic() < end, listing
        assert registered in listing


def test_no_copy_references_the_file_and_still_checks_it(tmp_path):
    original = make_add_model(tmp_path / "add.onnx")
    home = tmp_path / "home"
    out = cli(home, "models", "add", "add", "--runtime", "onnx", "--source", str(original),
              "--no-copy", "--load")  # fmt: skip
    assert f"files referenced: {original}" in out
    assert entry(home, "add")["spec"]["source"] == str(original)
    assert not (home / "models" / "add").exists()
    with run_server(tmp_path) as server:
        assert httpx.post(f"{server}/v2/models/add/infer", json=BODY).status_code == 200
        make_mlp_model(original, width=4)  # another model at the same path
        httpx.post(f"{server}/v2/repository/models/add/unload")
        r = httpx.post(f"{server}/v2/repository/models/add/load", timeout=60)
        assert r.status_code == 503 and str(original) in r.json()["error"]
        assert sha256(original) in r.json()["error"]


def test_large_files_are_hard_linked_not_copied(tmp_path):
    original = make_add_model(tmp_path / "add.onnx")
    home = tmp_path / "home"
    env = {"AIMASS_ARTIFACT_LINK_MIN_BYTES": "1"}
    out = cli(home, "models", "add", "add", "--runtime", "onnx", "--source", str(original),
              env=env)  # fmt: skip
    assert "files hard-linked" in out
    assert (home / "models" / "add" / "1" / "add.onnx").stat().st_ino == original.stat().st_ino


def test_a_folder_records_each_file_and_names_the_one_that_changed(tmp_path):
    folder = tiny_encoder(tmp_path / "encoder")
    spec = {"name": "enc", "runtime": "transformers", "task": "embedding", "source": str(folder)}
    with run_server(tmp_path, [spec]) as server:
        listed = httpx.get(f"{server}/v1/admin/models").json()["data"][0]["spec"]
        stored = Path(listed["source"])
        assert stored == server.home / "models" / "enc" / "1" / "encoder"
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        assert listed["sha256"] == {
            f"source/{p.relative_to(folder).as_posix()}": sha256(p) for p in files
        }
        config = stored / "config.json"
        config.write_text(config.read_text().replace("}", ', "edited": true}', 1))
        httpx.post(f"{server}/v2/repository/models/enc/unload")
        r = httpx.post(f"{server}/v2/repository/models/enc/load", timeout=60)
        assert r.status_code == 503
        assert f"file {config} changed" in r.json()["error"], r.json()


def test_versions_are_immutable_unless_replaced_explicitly(tmp_path):
    original = make_add_model(tmp_path / "add.onnx")
    home = tmp_path / "home"
    add = ["models", "add", "add", "--runtime", "onnx", "--source", str(original)]
    cli(home, *add)
    refused = cli_fails(home, *add, "--version", "1")
    assert "already registered" in refused and "--replace" in refused
    config = tmp_path / "models.yaml"
    spec = {"name": "add", "version": 1, "runtime": "onnx", "source": str(original)}
    # The same files with other settings: the settings change, the files stay.
    config.write_text(yaml.safe_dump([{**spec, "batching": {"max_batch_size": 2}}]))
    with run_server(tmp_path, extra_args=["--config", str(config)]) as server:
        assert httpx.post(f"{server}/v2/models/add/infer", json=BODY).status_code == 200
    kept = entry(home, "add")["spec"]
    assert kept["batching"]["max_batch_size"] == 2 and kept["sha256"]["source"] == sha256(original)
    # Other files for version 1: refused, the server does not start.
    make_mlp_model(original, width=4)
    refused = cli_fails(home, "serve", "--no-builtins", "--config", str(config), "--port", "1")
    assert "immutable" in refused and "Traceback" not in refused
    assert entry(home, "add")["spec"]["sha256"] == kept["sha256"]
    # The explicit override replaces them, and is audited.
    cli(home, *add, "--version", "1", "--replace")
    assert entry(home, "add")["spec"]["sha256"] == {"source": sha256(original)}
    audit = json.loads(cli(home, "audit", "--json"))
    newest = audit[0]
    assert (newest["action"], newest["target"], newest["result"]) == (
        "model.register",
        "add:1",
        "ok",
    )
