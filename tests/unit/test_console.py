"""The console's parts that need no browser: sessions, metric history, auth-off mode."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from aimass.config import Settings
from aimass.metrics import LATENCY, REQUESTS
from aimass.server import app as server_app
from aimass.server.ui.history import MetricsHistory, percentile
from aimass.server.ui.sessions import SessionStore


def test_a_session_ends_after_its_idle_time_and_on_sign_out():
    now = [0.0]
    store = SessionStore(ttl_s=10, clock=lambda: now[0])
    sid, session = store.create("am-secret")
    now[0] = 9.0
    assert store.get(sid) is session  # a request renews it
    now[0] = 18.0
    assert store.get(sid) is session
    now[0] = 28.5
    assert store.get(sid) is None
    sid, _ = store.create("am-secret")
    store.drop(sid)
    assert store.get(sid) is None and store.get(None) is None and store.get("guess") is None
    assert session.csrf_ok(session.csrf) and not session.csrf_ok("x") and not session.csrf_ok(None)


def test_percentile_interpolates_inside_the_bucket_as_prometheus_does():
    buckets = [(0.1, 50.0), (0.2, 90.0), (0.5, 100.0), (float("inf"), 100.0)]
    assert percentile(buckets, 0.5) == pytest.approx(0.1)
    assert percentile(buckets, 0.7) == pytest.approx(0.15)
    assert percentile(buckets, 0.95) == pytest.approx(0.35)
    assert percentile([(0.1, 0.0), (float("inf"), 0.0)], 0.5) is None
    assert percentile([(0.1, 0.0), (float("inf"), 4.0)], 0.5) == 0.1


def test_history_turns_counters_into_rates_per_model():
    history = MetricsHistory()
    history.take()
    REQUESTS.labels("hist-test", "1", "ok").inc(6)
    for _ in range(6):
        LATENCY.labels("hist-test", "1", "total").observe(0.004)
    history.take()
    point = history.samples[-1]["models"]["hist-test:1"]
    assert point["rps"] > 0
    assert 2.0 < point["p50_ms"] <= 5.0 and point["p99_ms"] <= 5.0
    history.take()
    assert history.samples[-1]["models"]["hist-test:1"]["rps"] == 0.0


def test_with_keys_not_required_the_console_opens_without_signing_in(tmp_path):
    asgi = server_app.create_app(Settings(home=tmp_path, require_auth=False))
    with TestClient(asgi) as client:
        for path in ("/ui/models", "/ui/playground", "/ui/keys", "/ui/usage", "/ui/jobs"):
            assert client.get(path).status_code == 200, path
        assert "Create key" in client.get("/ui/keys").text
        assert client.get("/ui/metrics/history").json()["interval_s"] == 2.0
        assert client.get("/ui/static/console.js").status_code == 200
