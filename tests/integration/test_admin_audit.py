"""The audit log's targets for model actions over HTTP, against a real server: ``name:version``
once the version is known (from the body, or the one the registry picked), the bare name when
the action failed before it was, and a registration inside a v2 load logged as one."""

from __future__ import annotations

import json

import httpx
import pytest

from aimass.registry import audit, keys
from tests.conftest import make_add_model, onnx_spec, run_server


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit")
    home = tmp / "home"
    home.mkdir()
    url = f"sqlite:///{home / 'aimass.db'}"
    _, admin = keys.create_key(url, "root", admin=True)
    model = make_add_model(tmp / "add.onnx")
    with run_server(tmp, [onnx_spec("add", model)], extra_args=["--require-auth"]) as server:
        yield {
            "server": server,
            "url": url,
            "model": model,
            "http": httpx.Client(
                base_url=server, headers={"Authorization": f"Bearer {admin}"}, timeout=120
            ),
        }


def _last(env, action: str) -> tuple[str, str]:
    """(target, result) of the newest ``action`` by the admin key."""
    newest = audit.entries(env["url"], actor="root", action=action, limit=1)[0]
    return newest["target"], newest["result"].split(":")[0]


def test_a_load_names_the_version_it_loaded(env):
    http = env["http"]
    r = http.post("/v2/repository/models/add/load", json={"parameters": {"version": 1}})
    assert r.status_code == 200, r.text
    assert _last(env, "model.load") == ("add:1", "ok")
    assert http.post("/v2/repository/models/add/load").status_code == 200
    assert _last(env, "model.load") == ("add:1", "ok")  # the newest, as it was loaded
    r = http.post("/v2/repository/models/add/load", json={"parameters": {"version": 7}})
    assert r.status_code == 404
    assert _last(env, "model.load") == ("add:7", "error 404")
    assert http.post("/v2/repository/models/nope/load").status_code == 404
    assert _last(env, "model.load") == ("nope", "error 404")


def test_a_spec_sent_with_a_load_is_audited_as_a_registration(env):
    http = env["http"]
    config = {"runtime": "onnx", "source": str(env["model"])}
    r = http.post(
        "/v2/repository/models/add2/load", json={"parameters": {"config": json.dumps(config)}}
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "add2", "version": "1", "state": "ready"}
    assert _last(env, "model.register") == ("add2:1", "ok")
    assert _last(env, "model.load") == ("add2:1", "ok")
    bad = {"runtime": "onnx", "source": "/nowhere/add.onnx"}
    r = http.post("/v2/repository/models/add3/load", json={"parameters": {"config": bad}})
    assert r.status_code == 400 and "/nowhere/add.onnx" in r.json()["error"]
    assert _last(env, "model.register") == ("add3:1", "error 400")
    assert _last(env, "model.load") == ("add3", "error 400")
    r = http.post("/v2/repository/models/add3/load", json={"parameters": {"config": "{"}})
    assert r.status_code == 400
    assert _last(env, "model.register") == ("add3", "error 400")


def test_a_refused_spec_is_audited_with_what_its_body_names(env):
    http = env["http"]
    r = http.post("/v1/admin/models", json={"name": "x", "runtime": "bogus", "source": "/s"})
    assert r.status_code == 400
    assert _last(env, "model.register") == ("x", "error 400")
    r = http.post("/v1/admin/models", json={"name": "x", "version": 3, "runtime": "bogus"})
    assert r.status_code == 400
    assert _last(env, "model.register") == ("x:3", "error 400")
    assert http.post("/v1/admin/models", content=b"[1]").status_code == 400
    assert _last(env, "model.register") == ("", "error 400")
    spec = {"name": "add4", "runtime": "onnx", "source": str(env["model"])}
    assert http.post("/v1/admin/models", json=spec).status_code == 200
    assert _last(env, "model.register") == ("add4:1", "ok")


def test_unload_and_remove_name_the_version_they_were_given(env):
    http = env["http"]
    r = http.post("/v2/repository/models/add/unload", json={"parameters": {"version": 1}})
    assert r.status_code == 200, r.text
    assert _last(env, "model.unload") == ("add:1", "ok")
    assert http.post("/v2/repository/models/add/unload").status_code == 200
    assert _last(env, "model.unload") == ("add", "ok")
    spec = {"name": "add5", "runtime": "onnx", "source": str(env["model"])}
    assert http.post("/v1/admin/models", json=spec).status_code == 200
    assert http.delete("/v1/admin/models/add5", params={"version": 1}).status_code == 200
    assert _last(env, "model.remove") == ("add5:1", "ok")
