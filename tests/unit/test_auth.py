"""The gate and its middleware on a small app: 401/403/429 shapes, scopes, limits, budgets,
usage flushing, admin checks, failure slow-down, body limit and the start-up refusal."""

from __future__ import annotations

import logging
import time

import pytest
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient

from aimass.access.gate import Gate, StartupRefused, check_startup
from aimass.config import Settings
from aimass.registry import audit, keys
from aimass.registry.usage import query_usage
from aimass.server.admin import access as routes_access
from aimass.server.app import wrap
from aimass.server.auth import caller_of
from aimass.server.context import require_admin
from aimass.server.errors import install_error_handlers


def make_app(settings: Settings):
    """A small app behind the server's own middleware list, using the gate as routes do."""
    app = FastAPI()
    gate = Gate(settings)
    app.state.settings, app.state.gate = settings, gate
    install_error_handlers(app)
    app.include_router(routes_access.router)

    @app.post("/v1/use/{model}")
    async def use(request: Request, model: str, estimate: int = 0, used: int = 0) -> dict:
        caller = caller_of(request)
        await gate.authorize(caller, model, estimate)
        gate.record(caller, model, prompt_tokens=used)
        return {"ok": True}

    @app.post("/v2/models/{model}/infer")
    async def infer(request: Request, model: str) -> dict:
        await gate.authorize(caller_of(request), model)
        return {"size": len(await request.body())}

    @app.get("/v2/health/ready")
    async def ready() -> dict:
        return {}

    @app.post("/v1/admin/thing")
    async def admin_thing(request: Request) -> dict:
        await require_admin(request)
        return {"done": True}

    return wrap(app, app)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(
        home=tmp_path,
        require_auth=True,
        auth_failure_delay_s=0.0,
        usage_flush_interval_s=0.05,
        max_body_bytes=1000,
    )


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def sync(client: TestClient) -> None:
    """Apply key changes now instead of waiting for the next refresh."""
    client.portal.call(client.app.gate.sync)


def test_unauthenticated_requests_get_401_in_each_protocol_shape(settings, caplog):
    _, key = keys.create_key(settings.resolved_database_url, "u")
    caplog.set_level(logging.DEBUG)
    with TestClient(make_app(settings)) as client:
        r = client.post("/v1/use/m")
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"
        assert r.json()["error"]["code"] == "invalid_api_key"
        wrong = key[:-4] + "abcd"
        r = client.post("/v2/models/m/infer", headers=bearer(wrong))
        assert r.status_code == 401 and isinstance(r.json()["error"], str)
        assert wrong not in r.text and key not in r.text
        r = client.post("/v1/use/m", headers={"Authorization": f"Basic {key}"})
        assert r.status_code == 401
        assert client.get("/v2/health/ready").status_code == 200
        assert client.post("/v1/use/m", headers=bearer(key)).status_code == 200
    assert key not in caplog.text and wrong not in caplog.text
    assert "authentication failed" in caplog.text


def test_scope_revocation_and_expiry(settings):
    url = settings.resolved_database_url
    _, key = keys.create_key(url, "scoped", models=frozenset({"a"}))
    with TestClient(make_app(settings)) as client:
        assert client.post("/v1/use/a", headers=bearer(key)).status_code == 200
        r = client.post("/v1/use/b", headers=bearer(key))
        assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
        keys.revoke_key(url, "scoped")
        sync(client)
        r = client.post("/v1/use/a", headers=bearer(key))
        assert r.status_code == 401 and "revoked" in r.json()["error"]["message"]
        info, late = keys.create_key(url, "late")  # found without waiting for a refresh
        assert client.post("/v1/use/a", headers=bearer(late)).status_code == 200
        from aimass.registry.db import session_scope
        from aimass.registry.tables import ApiKey, utcnow

        with session_scope(url) as s:
            s.get(ApiKey, info.id).expires_at = utcnow()
        sync(client)
        r = client.post("/v1/use/a", headers=bearer(late))
        assert r.status_code == 401 and "expired" in r.json()["error"]["message"]


def test_rate_limit_headers_and_429(settings):
    _, key = keys.create_key(settings.resolved_database_url, "slow", rpm=2, tpm=1000)
    with TestClient(make_app(settings)) as client:
        r = client.post("/v1/use/m?estimate=100&used=100", headers=bearer(key))
        assert r.status_code == 200
        assert r.headers["x-ratelimit-limit-requests"] == "2"
        assert r.headers["x-ratelimit-remaining-requests"] == "1"
        assert r.headers["x-ratelimit-remaining-tokens"] == "900"
        assert client.post("/v1/use/m", headers=bearer(key)).status_code == 200
        r = client.post("/v1/use/m", headers=bearer(key))
        assert r.status_code == 429
        assert r.json()["error"]["code"] == "rate_limited" and "rpm" in r.json()["error"]["message"]
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
        assert "x-ratelimit-reset-requests" in r.headers
        assert "x-ratelimit-reset-tokens" in r.headers


def test_limit_change_applies_on_refresh(settings):
    url = settings.resolved_database_url
    _, key = keys.create_key(url, "grow", rpm=1)
    with TestClient(make_app(settings)) as client:
        assert client.post("/v1/use/m", headers=bearer(key)).status_code == 200
        assert client.post("/v1/use/m", headers=bearer(key)).status_code == 429
        keys.update_key(url, "grow", rpm=100)
        sync(client)
        assert client.post("/v1/use/m", headers=bearer(key)).status_code == 200


def test_token_budget(settings):
    _, key = keys.create_key(
        settings.resolved_database_url, "budget", budget_tokens=100, budget_period="day"
    )
    with TestClient(make_app(settings)) as client:
        assert client.post("/v1/use/m?used=60", headers=bearer(key)).status_code == 200
        sync(client)  # the budget now comes from the database, not only from memory
        assert client.post("/v1/use/m?used=30", headers=bearer(key)).status_code == 200
        r = client.post("/v1/use/m?estimate=20", headers=bearer(key))
        assert r.status_code == 429 and "budget_tokens" in r.json()["error"]["message"]
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["x-ratelimit-limit-tokens"] == "100"
        assert r.headers["x-ratelimit-remaining-tokens"] == "10"
        assert r.headers["x-ratelimit-reset-tokens"].endswith("s")


def test_budget_headers_follow_the_binding_token_limit(settings):
    url = settings.resolved_database_url
    _, only_budget = keys.create_key(url, "b", budget_tokens=1000, budget_period="day")
    _, minute = keys.create_key(url, "m", tpm=500, budget_tokens=10**6, budget_period="month")
    _, budget = keys.create_key(url, "t", tpm=10**6, budget_tokens=1000, budget_period="month")
    with TestClient(make_app(settings)) as client:
        r = client.post("/v1/use/m?estimate=10&used=10", headers=bearer(only_budget))
        assert r.headers["x-ratelimit-limit-tokens"] == "1000"
        assert r.headers["x-ratelimit-remaining-tokens"] == "990"
        assert "x-ratelimit-limit-requests" not in r.headers
        r = client.post("/v1/use/m?estimate=100", headers=bearer(minute))
        assert r.headers["x-ratelimit-limit-tokens"] == "500"  # less left of the minute
        r = client.post("/v1/use/m?estimate=100", headers=bearer(budget))
        assert r.headers["x-ratelimit-limit-tokens"] == "1000"  # less left of the budget
        assert r.headers["x-ratelimit-remaining-tokens"] == "900"


def test_usage_endpoint_and_flush_on_shutdown(settings):
    url = settings.resolved_database_url
    _, admin = keys.create_key(url, "admin", admin=True)
    _, user = keys.create_key(url, "user", models=frozenset({"m"}))
    with TestClient(make_app(settings)) as client:
        client.post("/v1/use/m?used=7", headers=bearer(user))
        client.post("/v1/use/other", headers=bearer(user))  # 403: counted as an error
        client.post("/v1/use/m?used=3", headers=bearer(admin))
        mine = client.get("/v1/usage", headers=bearer(user)).json()["data"]
        assert {r["key"] for r in mine} == {"user"}
        by_model = {r["model"]: r for r in mine}
        assert by_model["m"]["prompt_tokens"] == 7 and by_model["other"]["errors"] == 1
        assert client.get("/v1/usage?key=admin", headers=bearer(user)).status_code == 403
        everyone = client.get("/v1/usage", headers=bearer(admin)).json()["data"]
        assert {r["key"] for r in everyone} == {"user", "admin"}
        client.post("/v1/use/m?used=5", headers=bearer(user))
    rows = {r["model"]: r for r in query_usage(url, key_name="user")}
    assert rows["m"]["requests"] == 2 and rows["m"]["prompt_tokens"] == 12


def test_admin_only_actions_and_audit(settings):
    url = settings.resolved_database_url
    _, admin = keys.create_key(url, "root", admin=True)
    _, user = keys.create_key(url, "joe")
    with TestClient(make_app(settings)) as client:
        r = client.post("/v1/admin/thing", headers=bearer(user))
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_required"
        assert client.post("/v1/admin/thing", headers=bearer(admin)).status_code == 200
        r = client.post("/v1/keys", json={"name": "new", "rpm": 5}, headers=bearer(admin))
        assert r.status_code == 200 and r.json()["key"].startswith("am-")
        assert client.post("/v1/keys", json={"name": "x"}, headers=bearer(user)).status_code == 403
        listed = client.get("/v1/keys", headers=bearer(admin)).json()["data"]
        assert {k["name"] for k in listed} == {"root", "joe", "new"}
        assert all("key" not in k and "secret_hash" not in k for k in listed)
        assert client.delete("/v1/keys/new", headers=bearer(admin)).status_code == 200
    trail = audit.entries(url)
    assert {(e["actor"], e["result"]) for e in trail} >= {("joe", "denied"), ("root", "ok")}
    assert {e["action"] for e in trail} >= {"key.create", "key.revoke"}
    assert all(e["source"] for e in trail)


def test_repeated_failures_are_slowed_down(settings):
    settings.auth_failure_delay_s = 0.1
    with TestClient(make_app(settings)) as client:
        start = time.perf_counter()
        for _ in range(4):
            assert (
                client.post("/v1/use/m", headers=bearer("am-000000000000-nope")).status_code == 401
            )
        assert time.perf_counter() - start >= 0.1 + 0.2 + 0.3


def test_auth_off_accepts_anything_but_honours_valid_keys(tmp_path):
    settings = Settings(home=tmp_path, usage_flush_interval_s=0.05)
    assert settings.require_auth is None and settings.host == "127.0.0.1"
    _, key = keys.create_key(settings.resolved_database_url, "k", models=frozenset({"a"}))
    with TestClient(make_app(settings)) as client:
        assert client.post("/v1/use/b").status_code == 200
        assert client.post("/v1/use/b", headers=bearer("EMPTY")).status_code == 200
        assert client.post("/v1/use/b", headers=bearer(key)).status_code == 403
        assert client.post("/v1/admin/thing").status_code == 200
    rows = query_usage(settings.resolved_database_url, model="b")
    assert {r["key"] for r in rows} == {"(anonymous)", "k"}


def test_body_limit_names_the_setting(settings):
    _, key = keys.create_key(settings.resolved_database_url, "b")
    with TestClient(make_app(settings)) as client:
        r = client.post("/v2/models/m/infer", content=b"x" * 1001, headers=bearer(key))
        assert r.status_code == 413 and "max_body_bytes" in r.json()["error"]

        def chunks(n: int):
            for _ in range(n):
                yield b"y" * 100

        r = client.post("/v2/models/m/infer", content=chunks(11), headers=bearer(key))
        assert r.status_code == 413
        r = client.post("/v2/models/m/infer", content=chunks(5), headers=bearer(key))
        assert r.status_code == 200 and r.json() == {"size": 500}
        r = client.post("/v1/use/m", content=b"x" * 2000, headers=bearer(key))
        assert r.status_code == 413 and r.json()["error"]["param"] == "max_body_bytes"


def test_startup_refusal(tmp_path):
    public = Settings(home=tmp_path, host="0.0.0.0")
    with pytest.raises(StartupRefused, match="admin API key"):
        check_startup(public)
    check_startup(Settings(home=tmp_path, host="0.0.0.0", insecure=True))
    check_startup(Settings(home=tmp_path))
    with pytest.raises(StartupRefused, match="insecure"):
        check_startup(Settings(home=tmp_path, host="0.0.0.0", require_auth=False))
    keys.create_key(public.resolved_database_url, "boss", admin=True)
    check_startup(public)
