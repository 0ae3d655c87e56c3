"""The registry on PostgreSQL, by URL: a real server started against a throwaway cluster.

Needs PostgreSQL's server binaries (initdb, pg_ctl) on PATH; as root, the cluster runs as the
``postgres`` user. Skipped, saying why, where neither is available.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time

import httpx
import pytest

from aimass.files.storage import LocalFileStorage
from aimass.files.store import ANY_OWNER, FileStore, Owner
from aimass.registry import models as registry
from aimass.registry.tables import utcnow
from aimass.spec import ModelSpec
from tests.conftest import free_port, make_add_model, run_server

BODY = {
    "inputs": [
        {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 1, 1, 1]},
    ]
}


def _as_postgres(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory):
    if not shutil.which("initdb") or not shutil.which("pg_ctl"):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    if os.geteuid() == 0 and not shutil.which("runuser"):
        pytest.skip("running as root without runuser to start PostgreSQL")
    root = tmp_path_factory.mktemp("pg")
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        root.chmod(0o755)
        for parent in root.parents:
            if parent == parent.parent or str(parent) in ("/tmp", "/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)
    port = free_port()
    subprocess.run(
        _as_postgres(["initdb", "-D", str(data), "-A", "trust", "-U", "aimass"]),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres(
            [
                "pg_ctl",
                "-D",
                str(data),
                "-l",
                str(root / "pg.log"),
                "-w",
                "-o",
                f"-p {port} -k {root} -h 127.0.0.1",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    url = f"postgresql+psycopg://aimass@127.0.0.1:{port}/postgres"
    try:
        yield url
    finally:
        subprocess.run(
            _as_postgres(["pg_ctl", "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )


def test_registry_functions_on_postgres(pg_url):
    spec = ModelSpec(name="pg-unit", runtime="onnx", source="/m.onnx")
    registry.add_model(pg_url, spec, load=True)
    assert registry.get_model(pg_url, "pg-unit").desired == "loaded"
    assert registry.remove_model(pg_url, "pg-unit") == [1]


def test_files_on_postgres(pg_url, tmp_path):
    store = FileStore(pg_url, LocalFileStorage(tmp_path / "files"), 1024)
    a = store.create(Owner(1, "a"), "a.txt", "batch", [b"aa"])
    store.create(Owner(2, "b"), "b.txt", "batch", [b"bb"], expires_at=utcnow())
    c = store.create(Owner(1, "a"), "c.txt", "vision", [b"cc"])
    page = {"purpose": None, "limit": 10, "newest_first": True}
    assert [r.id for r in store.page(1, after=None, **page)] == [c.id, a.id]
    assert [r.id for r in store.page(ANY_OWNER, after=c, **page)] == [a.id]  # b has expired
    assert store.get(a.id, 1).sha256 == hashlib.sha256(b"aa").hexdigest()
    assert store.sweep() == 1 and store.delete(a.id, 1).id == a.id
    assert [r.id for r in store.page(ANY_OWNER, after=None, **page)] == [c.id]


def test_server_keeps_its_models_in_postgres_across_restarts(pg_url, tmp_path):
    model = make_add_model(tmp_path / "add.onnx")
    spec = {"name": "pg-add", "runtime": "onnx", "source": str(model)}
    env = {"AIMASS_DATABASE_URL": pg_url}
    with run_server(tmp_path, [spec], env=env) as server:
        assert httpx.post(f"{server}/v2/models/pg-add/infer", json=BODY).status_code == 200
    assert not (tmp_path / "home" / "aimass.db").exists(), "the SQLite default was not used"
    with run_server(tmp_path, env=env) as server:
        end = time.monotonic() + 30
        while httpx.get(f"{server}/v2/health/ready").status_code != 200:
            assert time.monotonic() < end
            time.sleep(0.1)
        r = httpx.post(f"{server}/v2/models/pg-add/infer", json=BODY)
        assert r.status_code == 200, r.text
