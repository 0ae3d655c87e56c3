"""Every route of the app passes through the one request path: the middleware list (keys, body
limit) on both dispatch paths, and, for routes that use a model, the pipeline's authorization.

The routes are enumerated from the app itself, so a route added later is covered without
editing this test; a route that slips past the middleware, or a model route that skips the
pipeline, fails here.
"""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from starlette.routing import Route
from starlette.testclient import TestClient

from aimass.config import Settings
from aimass.registry import keys
from aimass.server import app as server_app
from aimass.server.auth import PUBLIC_PATHS
from aimass.server.fastpath import FastPath, all_routes, fast_routes


def _unwrap(asgi) -> tuple[FastAPI, FastPath]:
    """The FastAPI app and the fast path inside ``create_app``'s middleware."""
    seen = asgi
    while not isinstance(seen, FastPath):
        seen = seen.app
    return seen.app, seen


def _routes(app: FastAPI) -> list[tuple[str, str]]:
    """(method, concrete path) for every route and method the app serves."""
    out = []
    for route in all_routes(app):
        if not isinstance(route, Route):
            continue
        path = re.sub(r"\{version\}", "1", route.path)
        path = re.sub(r"\{[^}]+\}", "m", path)
        out += [(method, path) for method in sorted(route.methods - {"HEAD"})]
    return out


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path, require_auth=True, auth_failure_delay_s=0.0)


def test_the_fastapi_app_has_no_middleware_of_its_own(settings):
    app, path = _unwrap(server_app.create_app(settings))
    assert app.user_middleware == [], "add middleware to server.app.MIDDLEWARE, not the app"
    assert [e for *_, e in path.routes] == [r.endpoint for r in fast_routes(app)]
    assert {r.path for r in fast_routes(app)} >= {
        "/v2/models/{name}/infer",
        "/v2/models/{name}/versions/{version}/infer",
        "/v1/embeddings",
        "/v1/rerank",
        "/v1/completions",
        "/v1/chat/completions",
    }


def test_every_route_passes_every_middleware(settings, monkeypatch):
    seen: list[tuple[str, str]] = []

    class Sentinel:
        def __init__(self, inner, app):
            self.app = inner

        async def __call__(self, scope, receive, send):
            if scope["type"] == "http":
                seen.append((scope["method"], scope["path"]))
            await self.app(scope, receive, send)

    monkeypatch.setattr(server_app, "MIDDLEWARE", [*server_app.MIDDLEWARE, Sentinel])
    asgi = server_app.create_app(settings)
    app, _ = _unwrap(asgi)
    routes = _routes(app)
    assert len(routes) > 20
    with TestClient(asgi) as client:
        for method, path in routes:
            r = client.request(method, path, follow_redirects=False)
            if path in PUBLIC_PATHS:
                assert r.status_code != 401, path
                continue
            if path.startswith("/ui"):  # the console's pages send a browser to sign in
                assert (r.status_code, r.headers["location"]) == (303, "/ui/login"), path
                continue
            assert r.status_code == 401, (method, path, r.status_code)
            body = r.json()
            if path.startswith("/v2"):
                assert isinstance(body["error"], str)
            else:
                assert body["error"]["code"] == "invalid_api_key"
        assert seen == [r for r in routes if r[1] in PUBLIC_PATHS]
        seen.clear()
        _, admin = keys.create_key(settings.resolved_database_url, "root", admin=True)
        for method, path in routes:
            auth = {"Authorization": f"Bearer {admin}"}
            query = {"wait_s": 0.1} if path.endswith("/stream") else {}  # an SSE stream ends
            client.request(method, path, params=query, headers=auth, follow_redirects=False)
    assert seen == routes, "a route answered without passing the middleware list"


class Upload(dict):
    """A multipart form's fields (sent with a small file) rather than a JSON body."""


def _body(body) -> dict:
    if isinstance(body, Upload):
        return {"data": dict(body), "files": {"file": ("a.wav", b"RIFF")}}
    return {"json": body}


MODEL_ROUTES = [
    ("GET", "/v2/models/other", None),
    ("GET", "/v2/models/other/versions/1", None),
    ("GET", "/v2/models/other/ready", None),
    ("GET", "/v2/models/other/versions/1/ready", None),
    ("GET", "/v2/models/other/stats", None),
    ("GET", "/v2/models/other/versions/1/stats", None),
    ("POST", "/v2/models/other/infer", {"inputs": []}),
    ("POST", "/v2/models/other/versions/1/infer", {"inputs": []}),
    ("POST", "/v1/embeddings", {"model": "other", "input": "x"}),
    ("POST", "/v1/rerank", {"model": "other", "query": "q", "documents": ["d"]}),
    ("POST", "/v1/images/classifications", {"model": "other", "images": [{"image": "eA=="}]}),
    ("POST", "/v1/completions", {"model": "other", "prompt": "x"}),
    ("POST", "/v1/chat/completions",
     {"model": "other", "messages": [{"role": "user", "content": "x"}]}),
    ("POST", "/v1/ocr", {"model": "other", "image": "aGk="}),
    ("POST", "/v1/audio/transcriptions", Upload({"model": "other"})),
    ("POST", "/v1/vector_stores", {"name": "x", "embedding_model": "other"}),
    ("POST", "/v1/fine_tuning/jobs", {"model": "other", "training_file": "file-x"}),
    ("POST", "/v1/recommendations", {"model": "other", "user": "u"}),
    ("POST", "/v1/recommendations/similar", {"model": "other", "item": "i"}),
    ("POST", "/v1/recommendations/events",
     {"model": "other", "events": [{"user": "u", "item": "i"}]}),
    ("POST", "/v1/forecasts", {"model": "other", "series_id": "s", "horizon": 1}),
    ("POST", "/v1/forecasts/observations",
     {"model": "other", "observations": [{"series_id": "s", "timestamp": 1, "value": 1}]}),
    ("POST", "/v1/risk/score", {"model": "other", "event": {"timestamp": 1, "amount": 1}}),
]  # fmt: skip


def test_every_model_route_is_authorized_by_the_pipeline(settings):
    """A key scoped to model ``a`` is refused model ``other`` on every route that uses a
    model, with the pipeline's 403: each of them goes through ``Pipeline.open/resolve``."""
    asgi = server_app.create_app(settings)
    app, _ = _unwrap(asgi)
    modelled = {(m, p) for m, p in _routes(app) if "{name}" in p or p.startswith(("/v2/models/m",))}
    assert {(m, p.replace("other", "m")) for m, p, _ in MODEL_ROUTES} >= {
        (m, p) for m, p in _routes(app) if p.startswith("/v2/models/m")
    } | modelled
    _, key = keys.create_key(settings.resolved_database_url, "scoped", models=frozenset({"a"}))
    with TestClient(asgi) as client:
        for method, path, body in MODEL_ROUTES:
            auth = {"Authorization": f"Bearer {key}"}
            r = client.request(method, path, **_body(body), headers=auth)
            assert r.status_code == 403, (method, path, r.status_code, r.text)
            text = r.json()["error"] if path.startswith("/v2") else r.json()["error"]["message"]
            assert "may not use model 'other'" in text
