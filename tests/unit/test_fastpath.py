"""The fast path: hot routes called directly, behind the guard; everything else to the app."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.testclient import TestClient

from aimass.errors import InvalidInput
from aimass.server.fastpath import FastPath


async def echo(request: Request) -> JSONResponse:
    if request.path_params["name"] == "bad":
        raise InvalidInput("bad model name")
    if request.path_params["name"] == "boom":
        raise RuntimeError("bug")
    body = await request.body()
    return JSONResponse(
        {"params": request.path_params, "body": body.decode(), "app": request.app.title}
    )


def make() -> tuple[TestClient, list[str]]:
    app = FastAPI(title="inner")

    @app.post("/v2/models/{name}/infer")
    async def slow_route(name: str) -> dict:
        return {"via": "fastapi"}

    @app.get("/v2/models/{name}/infer")
    async def get_route(name: str) -> dict:
        return {"via": "fastapi-get"}

    guarded: list[str] = []

    def guard(endpoint):
        async def wrapped(scope, receive, send):
            guarded.append(scope["path"])
            await endpoint(scope, receive, send)

        return wrapped

    routes = [
        (r"/v2/models/(?P<name>[^/]+)/infer", echo),
        (r"/v1/things/(?P<name>[^/]+)", echo),
    ]
    return TestClient(FastPath(app, routes, guard)), guarded


def test_a_hot_route_is_called_directly_behind_the_guard():
    client, guarded = make()
    r = client.post("/v2/models/m%201/infer", content=b"hello")
    assert r.status_code == 200
    assert r.json() == {"params": {"name": "m 1"}, "body": "hello", "app": "inner"}
    assert guarded == ["/v2/models/m 1/infer"]


def test_other_methods_and_paths_go_to_the_app_unguarded():
    client, guarded = make()
    assert client.get("/v2/models/m/infer").json() == {"via": "fastapi-get"}
    assert client.post("/v2/models/m/infer/", follow_redirects=False).status_code == 307
    assert client.post("/v2/models/a/b/infer").status_code == 404
    assert guarded == []


def test_errors_are_rendered_in_the_protocol_shape():
    client, _ = make()
    r = client.post("/v2/models/bad/infer")
    assert r.status_code == 400 and r.json() == {"error": "bad model name"}
    r = client.post("/v1/things/bad")
    assert r.status_code == 400 and r.json()["error"]["message"] == "bad model name"
    r = client.post("/v2/models/boom/infer")
    assert r.status_code == 500 and r.json() == {"error": "internal error: RuntimeError"}
