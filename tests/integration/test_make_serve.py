"""``make serve`` runs the server where ``AIMASS_HOST`` / ``AIMASS_PORT`` say, as documented
(the target passes no address of its own that would override them)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time

import httpx

from tests.conftest import ROOT, free_port


def test_make_serve_listens_on_aimass_port(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "AIMASS_HOME": str(tmp_path / "home"),
        "AIMASS_PORT": str(port),
        "AIMASS_HOST": "127.0.0.1",
        "AIMASS_BUILTINS": "false",
    }
    log = (tmp_path / "make.log").open("w")
    # -o install: the venv is there already; do not let make reinstall it
    make = subprocess.Popen(
        ["make", "-o", "install", "serve"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and make.poll() is None:
            try:
                r = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
            except httpx.HTTPError:
                time.sleep(0.2)
                continue
            assert r.status_code == 200 and r.json() == {"live": True}
            assert httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"] == []
            return
        raise AssertionError((tmp_path / "make.log").read_text())
    finally:
        with contextlib.suppress(ProcessLookupError):  # make may have exited on its own
            os.killpg(make.pid, signal.SIGTERM)
        make.wait(timeout=30)
        log.close()
