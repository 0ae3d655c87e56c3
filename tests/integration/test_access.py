"""Access control against the real server: keys from the CLI, 401/403/429, scoped listings,
admin-only actions with an audit trail, revocation within seconds, usage that survives a
restart, the body limit, and no key material in the database or the logs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from aimass.registry import audit, keys
from tests.conftest import ROOT, make_add_model, onnx_spec, run_server

ROW = [1.0, 2.0, 3.0, 4.0]
BODY = {
    "inputs": [
        {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": ROW},
        {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": ROW},
    ]
}
ENV = {
    "AIMASS_AUTH_FAILURE_DELAY_S": "0.2",
    "AIMASS_USAGE_FLUSH_INTERVAL_S": "0.2",
    "AIMASS_MAX_BODY_BYTES": "20000",
}


def cli(home: Path, *args: str) -> str:
    """Run ``aimass <args>`` as a user would; returns stdout."""
    env = {**os.environ, "AIMASS_HOME": str(home)}
    out = subprocess.run(
        [sys.executable, "-m", "aimass", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def db_url(home: Path) -> str:
    return f"sqlite:///{home / 'aimass.db'}"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("access")
    home = tmp / "home"
    home.mkdir()
    admin = cli(home, "keys", "create", "--name", "admin", "--admin").strip().splitlines()[-1]
    url = db_url(home)
    _, user = keys.create_key(url, "user", models=frozenset({"add1"}))
    _, slow = keys.create_key(url, "slow", rpm=2, tpm=10_000)
    models = [onnx_spec(n, make_add_model(tmp / f"{n}.onnx")) for n in ("add1", "add2")]
    with run_server(tmp, models, extra_args=["--require-auth"], env=ENV) as srv:
        yield {
            "base": str(srv),
            "server": srv,
            "home": home,
            "url": url,
            "admin": admin,
            "user": user,
            "slow": slow,
        }


def infer(env, model: str, key: str | None, **kw) -> httpx.Response:
    headers = bearer(key) if key else {}
    return httpx.post(
        f"{env['base']}/v2/models/{model}/infer", json=BODY, headers=headers, timeout=30, **kw
    )


def test_missing_or_unknown_key_is_401_in_each_shape(env):
    base = env["base"]
    assert httpx.get(f"{base}/v2/health/ready").status_code == 200
    r = infer(env, "add1", None)
    assert r.status_code == 401 and isinstance(r.json()["error"], str)
    r = httpx.get(f"{base}/v1/models", headers=bearer("am-0123456789ab-" + "x" * 43))
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"
    assert httpx.get(f"{base}/metrics").status_code == 401
    bad = openai.OpenAI(base_url=f"{base}/v1", api_key="sk-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()


def test_repeated_failures_from_one_address_are_slowed(env):
    took = []
    for _ in range(3):
        start = time.perf_counter()
        assert infer(env, "add1", "am-000000000000-nope").status_code == 401
        took.append(time.perf_counter() - start)
    assert took[-1] >= 0.4  # at least two earlier failures, 0.2 s each


def test_scope_limits_use_and_listings(env):
    user = env["user"]
    r = infer(env, "add1", user)
    assert r.status_code == 200, r.text
    r = infer(env, "add2", user)
    assert r.status_code == 403 and "add2" in r.json()["error"]
    client = openai.OpenAI(base_url=f"{env['base']}/v1", api_key=user, max_retries=0)
    assert [m.id for m in client.models.list()] == ["add1"]
    index = httpx.post(f"{env['base']}/v2/repository/index", json={}, headers=bearer(user))
    assert [e["name"] for e in index.json()] == ["add1"]
    admin_index = httpx.post(
        f"{env['base']}/v2/repository/index", json={}, headers=bearer(env["admin"])
    )
    assert {e["name"] for e in admin_index.json()} == {"add1", "add2"}


def test_admin_actions_need_an_admin_key_and_are_audited(env):
    base, user, admin = env["base"], env["user"], env["admin"]
    r = httpx.post(f"{base}/v2/repository/models/add2/unload", headers=bearer(user), timeout=60)
    assert r.status_code == 403
    r = httpx.post(f"{base}/v2/repository/models/add2/unload", headers=bearer(admin), timeout=60)
    assert r.status_code == 200, r.text
    r = httpx.post(f"{base}/v2/repository/models/add2/load", headers=bearer(admin), timeout=120)
    assert r.status_code == 200, r.text
    trail = audit.entries(env["url"])
    seen = {(e["actor"], e["action"], e["result"]) for e in trail}
    assert ("user", "POST /v2/repository/models/add2/unload", "denied") in seen
    assert ("admin", "model.unload", "ok") in seen and ("admin", "model.load", "ok") in seen
    assert all(e["source"] == "127.0.0.1" for e in trail if e["actor"] in ("user", "admin"))
    listed = cli(env["home"], "audit")
    assert "model.load" in listed and "key.create" in listed


def test_rate_limits_answer_429_with_openai_headers(env):
    slow = env["slow"]
    first = infer(env, "add1", slow)
    assert first.status_code == 200
    assert first.headers["x-ratelimit-limit-requests"] == "2"
    assert first.headers["x-ratelimit-remaining-requests"] == "1"
    assert first.headers["x-ratelimit-limit-tokens"] == "10000"
    assert infer(env, "add1", slow).status_code == 200
    r = infer(env, "add1", slow)
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    for h in ("limit", "remaining", "reset"):
        assert f"x-ratelimit-{h}-requests" in r.headers and f"x-ratelimit-{h}-tokens" in r.headers


def test_body_limit_names_the_setting(env):
    r = httpx.post(
        f"{env['base']}/v2/models/add1/infer",
        content=b"{" + b" " * 30_000 + b"}",
        headers=bearer(env["admin"]),
    )
    assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]


def test_revocation_and_limit_changes_apply_within_seconds(env):
    url = env["url"]
    _, temp = keys.create_key(url, "temp", rpm=1)
    assert infer(env, "add1", temp).status_code == 200  # new key works at once
    assert infer(env, "add1", temp).status_code == 429
    cli(env["home"], "keys", "update", "temp", "--rpm", "1000")
    assert _within(5.0, lambda: infer(env, "add1", temp).status_code == 200)
    cli(env["home"], "keys", "revoke", "temp")
    assert _within(5.0, lambda: infer(env, "add1", temp).status_code == 401)


def test_usage_per_key_and_admin_view(env):
    base = env["base"]
    mine = httpx.get(f"{base}/v1/usage", headers=bearer(env["user"])).json()["data"]
    assert {r["key"] for r in mine} == {"user"}
    rows = {r["model"]: r for r in mine}
    assert rows["add1"]["requests"] >= 1 and rows["add2"]["errors"] >= 1
    everyone = httpx.get(f"{base}/v1/usage", headers=bearer(env["admin"])).json()["data"]
    assert {"user", "slow"} <= {r["key"] for r in everyone}
    assert httpx.get(f"{base}/v1/usage?key=slow", headers=bearer(env["user"])).status_code == 403


def test_no_key_material_in_database_or_logs(env):
    # runs last in this module: every key above has been sent, accepted and refused by now
    stored = b"".join(p.read_bytes() for p in env["home"].glob("aimass.db*"))
    log = env["server"].log()
    for key in (env["admin"], env["user"], env["slow"]):
        secret = key.split("-", 2)[2]
        assert secret.encode() not in stored and secret not in log


def test_restart_keeps_keys_and_usage(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    _, key = keys.create_key(db_url(home), "keeper")
    models = [onnx_spec("add1", make_add_model(tmp_path / "add1.onnx"))]
    args = ["--require-auth"]
    only_at_shutdown = {**ENV, "AIMASS_USAGE_FLUSH_INTERVAL_S": "3600"}
    with run_server(tmp_path, models, extra_args=args, env=only_at_shutdown) as srv:
        for _ in range(3):
            r = httpx.post(f"{srv}/v2/models/add1/infer", json=BODY, headers=bearer(key))
            assert r.status_code == 200
    # a clean shutdown flushed the last counters; the next server sees them and the key
    with run_server(tmp_path, models, extra_args=args, env=ENV) as srv:
        r = httpx.post(f"{srv}/v2/models/add1/infer", json=BODY, headers=bearer(key))
        assert r.status_code == 200
        rows = httpx.get(f"{srv}/v1/usage", headers=bearer(key)).json()["data"]
    assert [(r["model"], r["requests"]) for r in rows] == [("add1", 4)]
    out = cli(home, "usage", "--key", "keeper")
    assert "add1" in out and "\t4\t" in out


def _within(seconds: float, check) -> bool:
    """Poll an effect that another process causes (no event to await across processes)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False
