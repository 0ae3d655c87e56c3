"""Property-based fuzzing of the v2 endpoints: whatever a client sends, never a 5xx."""

from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_add_model, make_identity_text_model, onnx_spec, run_server

DATATYPES = ["FP32", "INT64", "BYTES", "BOOL", "FP16", "UINT8", "INT8", "FOO", ""]
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
nested = st.recursive(scalars, lambda c: st.lists(c, max_size=4), max_leaves=20)
tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["a", "b", "x", "text", ""]),
        "shape": st.lists(st.integers(-2, 5), max_size=3),
        "datatype": st.sampled_from(DATATYPES),
    },
    optional={
        "data": nested,
        "parameters": st.dictionaries(
            st.sampled_from(["binary_data_size", "x"]), st.integers(-5, 50), max_size=2
        ),
    },
)
request = st.fixed_dictionaries(
    {"inputs": st.lists(tensor, max_size=3)},
    optional={
        "id": st.one_of(st.text(max_size=5), st.integers()),
        "parameters": st.dictionaries(
            st.sampled_from(["timeout", "binary_data_output", "k"]), scalars, max_size=2
        ),
        "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=4)}), max_size=2),
    },
)
any_json = st.recursive(
    scalars, lambda c: st.lists(c) | st.dictionaries(st.text(max_size=4), c), max_leaves=10
)


segment = st.text(min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))
timeouts = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "1e309", "0", "-1", "", "abc", "1e-9", "²"]),
    st.floats().map(str),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=8),
).filter(lambda v: v == v.strip())  # HTTP clients refuse to send surrounding whitespace
ADD_BODY = {
    "inputs": [
        {"name": "a", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
        {"name": "b", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]},
    ]
}


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    models = [
        onnx_spec("add", make_add_model(tmp / "add.onnx")),
        onnx_spec("text", make_identity_text_model(tmp / "t.onnx")),
    ]
    with run_server(tmp, models) as server, httpx.Client(base_url=server, timeout=30) as c:
        yield c


# Derandomized: the same examples on every run, so a CI run is reproducible.
FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
PATHS = [
    "/v2/models/add/infer",
    "/v2/models/text/infer",
    "/v2/models/add/versions/1/infer",
    "/v2/models/add/versions/0/infer",
    "/v2/models/nope/infer",
]


@FUZZ
@given(body=request, path=st.sampled_from(PATHS))
def test_structured_requests_never_give_5xx(client, body, path):
    r = client.post(path, json=body)
    assert r.status_code < 500, (body, r.text)
    if r.status_code >= 400:
        assert isinstance(r.json()["error"], str)


@FUZZ
@given(
    body=any_json,
    path=st.sampled_from([*PATHS, "/v2/repository/index", "/v2/repository/models/nope/load"]),
)
def test_arbitrary_json_never_gives_5xx(client, body, path):
    r = client.post(path, json=body)
    assert r.status_code < 500, (body, r.text)


@FUZZ
@given(raw=st.binary(max_size=200), header=st.one_of(st.none(), st.integers(-5, 300).map(str)))
def test_arbitrary_bytes_never_give_5xx(client, raw, header):
    headers = {"Inference-Header-Content-Length": header} if header is not None else {}
    r = client.post("/v2/models/add/infer", content=raw, headers=headers)
    assert r.status_code < 500, (raw, r.text)


@FUZZ
@given(
    name=st.one_of(st.sampled_from(["add", "text"]), segment),
    version=st.one_of(st.none(), segment, st.integers(-3, 3).map(str)),
    verb=st.sampled_from(["", "/ready", "/infer"]),
)
def test_any_model_path_never_gives_5xx(client, name, version, verb):
    path = f"/v2/models/{quote(name, safe='')}"
    if version is not None:
        path += f"/versions/{quote(version, safe='')}"
    path += verb
    r = client.post(path, json=ADD_BODY) if verb == "/infer" else client.get(path)
    assert r.status_code < 500, (path, r.text)


@FUZZ
@given(value=timeouts, in_body=st.booleans())
def test_any_client_deadline_never_gives_5xx(client, value, in_body):
    if in_body:
        r = client.post("/v2/models/add/infer", json={**ADD_BODY, "parameters": {"timeout": value}})
    else:
        r = client.post(
            "/v2/models/add/infer", json=ADD_BODY, headers={"Request-Timeout": value.encode()}
        )
    assert r.status_code in (200, 400, 504), (value, r.text)


@FUZZ
@given(
    params=st.fixed_dictionaries(
        {},
        optional={
            "config": st.one_of(any_json, st.text(max_size=12), any_json.map(str)),
            "version": scalars,
        },
    ),
    verb=st.sampled_from(["load", "unload"]),
    ready=scalars,
)
def test_repository_control_bodies_never_give_5xx(client, params, verb, ready):
    r = client.post(f"/v2/repository/models/nope/{verb}", json={"parameters": params})
    assert r.status_code < 500, (params, r.text)
    r = client.post("/v2/repository/index", json={"ready": ready})
    assert r.status_code == (200 if ready is None or isinstance(ready, bool) else 400), r.text
