"""The fast path: @fast routes called directly with FastAPI's own patterns; the rest to the app."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.testclient import TestClient

from aimass.errors import InvalidInput
from aimass.server.errors import install_error_handlers
from aimass.server.fastpath import FastPath, fast, fast_routes


def make() -> tuple[FastAPI, FastPath]:
    app = FastAPI(title="inner")
    install_error_handlers(app)

    @fast
    @app.post("/v2/models/{name}/infer")
    async def echo(request: Request, name: str) -> JSONResponse:
        if name == "bad":
            raise InvalidInput("bad model name")
        if name == "boom":
            raise RuntimeError("bug")
        body = await request.body()
        routed = "route" in request.scope  # FastAPI's router sets it; the fast path does not
        return JSONResponse({"name": name, "body": body.decode(), "app": request.app.title,
                             "via_router": routed})  # fmt: skip

    @fast
    @app.post("/v1/things/{name}/versions/{version}")
    async def thing(request: Request, name: str, version: str) -> JSONResponse:
        return JSONResponse({"name": name, "version": version})

    @app.get("/v2/models/{name}/infer")
    async def get_route(name: str) -> dict:
        return {"via": "fastapi-get"}

    return app, FastPath(app)


def test_the_table_is_the_apps_own_marked_routes():
    app, path = make()
    assert [r.path for r in fast_routes(app)] == [
        "/v2/models/{name}/infer",
        "/v1/things/{name}/versions/{version}",
    ]
    assert [endpoint for *_, endpoint in path.routes] == [r.endpoint for r in fast_routes(app)]
    documented = app.openapi()["paths"]
    assert "/v2/models/{name}/infer" in documented
    params = documented["/v1/things/{name}/versions/{version}"]["post"]["parameters"]
    assert {p["name"] for p in params if p["in"] == "path"} == {"name", "version"}


def test_a_fast_route_is_called_directly_with_its_path_parameters():
    _, path = make()
    client = TestClient(path)
    r = client.post("/v2/models/m%201/infer", content=b"hello")
    assert r.status_code == 200
    assert r.json() == {"name": "m 1", "body": "hello", "app": "inner", "via_router": False}
    assert client.post("/v1/things/a/versions/2").json() == {"name": "a", "version": "2"}


def test_other_methods_and_paths_go_to_the_app():
    _, path = make()
    client = TestClient(path)
    assert client.get("/v2/models/m/infer").json() == {"via": "fastapi-get"}
    assert client.post("/v2/models/m/infer/", follow_redirects=False).status_code == 307
    r = client.post("/v2/models/a/b/infer")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}


def test_errors_are_rendered_in_the_protocol_shape():
    _, path = make()
    client = TestClient(path)
    r = client.post("/v2/models/bad/infer")
    assert r.status_code == 400 and r.json() == {"error": "bad model name"}
    r = client.post("/v2/models/boom/infer")
    assert r.status_code == 500 and r.json() == {"error": "internal error: RuntimeError"}
