"""Access control against the real server: keys from the CLI, 401/403/429, scoped listings,
admin-only actions with an audit trail, revocation within seconds, usage that survives a
restart, the body limit, and no key material in the database or the logs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aimass.registry import audit, keys
from aimass.registry.usage import Counts, today, write_usage
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


def test_refusals_for_made_up_models_share_one_usage_row(env):
    """A scoped key asking for names the server does not serve cannot grow usage without bound."""
    for name in ("made-up-1", "made-up-2", "made-up-3"):
        assert infer(env, name, env["user"]).status_code == 403
    deadline = time.monotonic() + 10
    while (usage := _usage(env, "user")).get("(unknown model)", (0, 0))[1] < 3:
        assert time.monotonic() < deadline, usage
        time.sleep(0.1)
    assert not any(model.startswith("made-up") for model in usage)


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


def test_expired_key_is_401_in_each_shape(env):
    _, expired = keys.create_key(env["url"], "expired", expires_in=timedelta(seconds=-1))
    r = infer(env, "add1", expired)
    assert r.status_code == 401 and "expired" in r.json()["error"]
    client = openai.OpenAI(base_url=f"{env['base']}/v1", api_key=expired, max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        client.models.list()
    assert err.value.body["code"] == "invalid_api_key"


def test_spent_token_budget_is_429_with_openai_headers(env):
    url = env["url"]
    info, key = keys.create_key(url, "budget", budget_tokens=100, budget_period="day")
    both, key_rpm = keys.create_key(
        url, "budget-rpm", rpm=50, budget_tokens=100, budget_period="day"
    )
    ok = infer(env, "add1", key)
    assert ok.status_code == 200, ok.text
    assert ok.headers["x-ratelimit-limit-tokens"] == "100"
    assert ok.headers["x-ratelimit-remaining-tokens"] == "100"
    # over-spent (actual tokens beyond the estimate) through another server sharing the database:
    # this one sees it at its next key refresh
    day = today()
    write_usage(url, {(i.id, i.name, "add1", day): Counts(1, 150, 0, 0) for i in (info, both)})
    assert _within(5.0, lambda: infer(env, "add1", key).status_code == 429)
    r = infer(env, "add1", key)
    assert r.status_code == 429 and "budget_tokens" in r.json()["error"]
    assert r.headers["x-ratelimit-limit-tokens"] == "100"
    assert r.headers["x-ratelimit-remaining-tokens"] == "0"
    to_midnight = 86400 - (time.time() % 86400)
    assert abs(int(r.headers["retry-after"]) - to_midnight) <= 5
    assert r.headers["x-ratelimit-reset-tokens"].endswith("s")
    assert _within(5.0, lambda: infer(env, "add1", key_rpm).status_code == 429)
    r = infer(env, "add1", key_rpm)
    assert r.headers["x-ratelimit-limit-requests"] == "50"  # the rpm still reported
    assert r.headers["x-ratelimit-remaining-tokens"] == "0"  # the budget binds


def test_keys_over_http_create_rotate_revoke_audited(env):
    base, admin = env["base"], env["admin"]
    r = httpx.post(f"{base}/v1/keys", json={"name": "svc"}, headers=bearer(env["user"]))
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
    r = httpx.post(f"{base}/v1/keys", json={"name": "bad", "rpm": -1}, headers=bearer(admin))
    assert r.status_code == 400 and r.json()["error"]["param"] == "rpm"
    body = {"name": "svc", "models": ["add1"], "expires": "1d"}
    created = httpx.post(f"{base}/v1/keys", json=body, headers=bearer(admin)).json()
    first = created["key"]
    assert infer(env, "add1", first).status_code == 200
    assert infer(env, "add2", first).status_code == 403
    r = httpx.post(f"{base}/v1/keys/svc/rotate", headers=bearer(admin))
    second = r.json()["key"]
    assert second != first and infer(env, "add1", second).status_code == 200
    assert _within(5.0, lambda: infer(env, "add1", first).status_code == 401)
    assert httpx.delete(f"{base}/v1/keys/svc", headers=bearer(admin)).json()["state"] == "revoked"
    assert _within(5.0, lambda: infer(env, "add1", second).status_code == 401)
    trail = {(e["actor"], e["action"], e["target"], e["result"][:5]) for e in _audit(env)}
    assert ("user", "POST /v1/keys", "", "denie") in trail
    assert ("admin", "key.create", "bad", "error") in trail
    for action in ("key.create", "key.rotate", "key.revoke"):
        assert ("admin", action, "svc", "ok") in trail


def test_failed_model_registration_over_http_is_audited(env):
    base, admin = env["base"], env["admin"]
    spec = {"name": "broken", "runtime": "no-such-runtime", "source": "/nowhere"}
    r = httpx.post(f"{base}/v1/admin/models", json=spec, headers=bearer(admin))
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.post(f"{base}/v1/admin/models", content=b"{not json", headers=bearer(admin))
    assert r.status_code == 400
    r = httpx.post(f"{base}/v2/repository/models/add2/load", content=b"[", headers=bearer(admin))
    assert r.status_code == 400 and isinstance(r.json()["error"], str)
    failed = [e for e in _audit(env) if e["actor"] == "admin" and e["result"].startswith("error")]
    seen = {(e["action"], e["target"]) for e in failed}
    assert {("model.register", "broken"), ("model.register", ""), ("model.load", "add2")} <= seen
    assert all(e["source"] == "127.0.0.1" and e["at"] for e in failed)
    listed = cli(env["home"], "audit", "--action", "model.register")
    assert "broken" in listed and "broken:" not in listed and "error 400" in listed


def test_serve_config_registrations_are_audited(env):
    own = [e for e in _audit(env) if e["action"] == "model.register" and e["source"] == "cli"]
    assert {e["target"] for e in own} >= {"add1:1", "add2:1"}
    assert all(e["actor"].startswith("cli") and e["result"] == "ok" for e in own)


def test_early_v2_errors_count_in_usage_and_metrics(env):
    url = env["url"]
    _, key = keys.create_key(url, "counted")
    _, scoped = keys.create_key(url, "counted-scoped", models=frozenset({"add1"}))
    before = _requests_by_status(env)
    bad_shape = {"inputs": [{**i, "shape": [1, 3], "data": ROW[:3]} for i in BODY["inputs"]]}
    assert infer(env, "add1", key).status_code == 200
    assert _post_infer(env, "add1", key, content=b"{").status_code == 400
    assert _post_infer(env, "add1", key, json=bad_shape).status_code == 400
    # a version that is not loaded: usage counts it, but no metric label for a client's number
    assert _post_infer(env, "add1/versions/9", key, json=BODY).status_code == 404
    assert infer(env, "nosuch", key).status_code == 404  # unknown name: counted nowhere
    assert infer(env, "add2", scoped).status_code == 403  # the gate's refusal
    after = _requests_by_status(env)
    delta = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    assert delta == {("add1", "1", "200"): 1, ("add1", "1", "400"): 2, ("add2", "1", "403"): 1}
    assert _usage(env, "counted") == {"add1": (4, 3)}
    assert _usage(env, "counted-scoped") == {"add2": (1, 1)}  # counted once, not twice


def _post_infer(env, path: str, key: str, **kw) -> httpx.Response:
    return httpx.post(f"{env['base']}/v2/models/{path}/infer", headers=bearer(key), **kw)


def _usage(env, key_name: str) -> dict[str, tuple[int, int]]:
    """``{model: (requests, errors)}`` of one key, as ``GET /v1/usage`` reports it."""
    r = httpx.get(f"{env['base']}/v1/usage?key={key_name}", headers=bearer(env["admin"]))
    return {row["model"]: (row["requests"], row["errors"]) for row in r.json()["data"]}


def _requests_by_status(env) -> dict[tuple[str, str, str], float]:
    text = httpx.get(f"{env['base']}/metrics", headers=bearer(env["admin"])).text
    return {
        (s.labels["model"], s.labels["version"], s.labels["status"]): s.value
        for family in text_string_to_metric_families(text)
        if family.name == "aimass_requests"
        for s in family.samples
        if s.name == "aimass_requests_total"
    }


def _audit(env) -> list[dict]:
    return audit.entries(env["url"], limit=1000)


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


def serve_refused(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``aimass serve`` that must refuse before binding (so 0.0.0.0 is never opened)."""
    full = {**os.environ, "AIMASS_HOME": str(home), **env}
    cmd = [sys.executable, "-m", "aimass", "serve", "--no-builtins", "--port", "0", *args]
    out = subprocess.run(cmd, env=full, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0, out.stdout + out.stderr
    return out


def test_public_bind_without_admin_key_refuses_to_start(tmp_path):
    out = serve_refused(tmp_path, "--host", "0.0.0.0")
    assert "refusing to serve 0.0.0.0 without an admin API key" in out.stderr
    assert "aimass keys create --name admin --admin" in out.stderr
    # AIMASS_HOST is honoured when --host is not given, with the same refusal
    out = serve_refused(tmp_path, AIMASS_HOST="0.0.0.0")
    assert "refusing to serve 0.0.0.0" in out.stderr
    out = serve_refused(tmp_path, "--host", "0.0.0.0", AIMASS_REQUIRE_AUTH="false")
    assert "pass --insecure" in out.stderr


def test_aimass_port_is_used_when_no_port_flag(tmp_path):
    models = [onnx_spec("add1", make_add_model(tmp_path / "add1.onnx"))]
    with run_server(tmp_path, models, port_from_env=True, timeout_s=60) as srv:
        r = httpx.post(f"{srv}/v2/models/add1/infer", json=BODY)
        assert r.status_code == 200, r.text


def _within(seconds: float, check) -> bool:
    """Poll an effect that another process causes (no event to await across processes)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.1)
    return False
