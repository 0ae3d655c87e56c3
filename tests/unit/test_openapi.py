"""The OpenAPI document describes every route completely, and the server keeps its word on 405.

Read from the app itself, so a route added later is held to the same rules: a typed success
answer, every path parameter declared, the middleware's 401 and 413 in the protocol's error
shape, and no FastAPI 422 this server never sends. ``test_openapi_schemathesis.py`` checks the
running server against the same document.
"""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from aimass.config import Settings
from aimass.errors import InvalidInput
from aimass.refs import parse_version
from aimass.server.app import create_app, fastapi_app
from aimass.server.auth import PUBLIC_PATHS
from aimass.server.openapi import VERSION_SCHEMA


@pytest.fixture(scope="module")
def document(tmp_path_factory) -> dict:
    return fastapi_app(Settings(home=tmp_path_factory.mktemp("home"), builtins=False)).openapi()


def _operations(document: dict):
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            yield path, method.upper(), operation


def _error_schema(path: str) -> str:
    name = "InferenceErrorResponse" if path.startswith("/v2") else "ErrorResponse"
    return f"#/components/schemas/{name}"


def test_every_answer_has_a_schema(document):
    for path, method, operation in _operations(document):
        for status, answer in operation["responses"].items():
            content = answer.get("content", {})
            assert content, (method, path, status)
            assert all(media.get("schema") for media in content.values()), (method, path, status)


def test_every_path_parameter_is_declared(document):
    for path, method, operation in _operations(document):
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), (method, path)


def test_the_middleware_answers_are_documented_in_the_protocol_shape(document):
    for path, method, operation in _operations(document):
        responses = operation["responses"]
        expected = set() if path in PUBLIC_PATHS else {"401"}
        expected |= {"413"} if "requestBody" in operation else set()
        for status in expected:
            schema = responses[status]["content"]["application/json"]["schema"]
            assert schema == {"$ref": _error_schema(path)}, (method, path, status)
        assert operation.get("security", document["security"]) == (
            [] if path in PUBLIC_PATHS else [{"apiKey": []}]
        )
    assert document["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"


def test_errors_are_in_the_protocol_shape_and_never_fastapis_422(document):
    """Probes say ``{"ready": false}`` with their 503; every other error is the protocol's
    error (a model's readiness 400 may also be its ``{"name", "ready", "error"}``)."""
    assert "HTTPValidationError" not in document["components"]["schemas"]
    for path, method, operation in _operations(document):
        for status, answer in operation["responses"].items():
            if status.startswith(("4", "5")) and path not in PUBLIC_PATHS:
                assert _error_schema(path) in str(answer), (method, path, status)


@pytest.mark.parametrize("value", ["1", "007", "2147483647"])
def test_a_version_the_pattern_accepts_is_a_version(value):
    assert re.match(VERSION_SCHEMA["pattern"], value)
    assert parse_version(value) == int(value)


@pytest.mark.parametrize("value", ["0", "00", "-1", "1.0", "²", "x", "1 "])
def test_a_version_the_pattern_refuses_is_refused(value):
    assert not re.match(VERSION_SCHEMA["pattern"], value)
    with pytest.raises(InvalidInput):
        parse_version(value)


def test_every_version_segment_has_the_version_schema(document):
    versions = [
        p["schema"]
        for _, _, operation in _operations(document)
        for p in operation.get("parameters", [])
        if p["name"] == "version" and p["in"] == "path"
    ]
    assert len(versions) == 4 and all(schema == VERSION_SCHEMA for schema in versions)


def test_a_405_allows_every_method_of_the_path(tmp_path):
    with TestClient(create_app(Settings(home=tmp_path, builtins=False))) as client:
        answer = client.request("PUT", "/v1/keys")
        assert answer.status_code == 405
        assert answer.headers["allow"] == "GET, POST"
        assert answer.json()["error"]["code"] == "http_error"
        answer = client.get("/v2/models/m/infer")
        assert answer.status_code == 405 and answer.headers["allow"] == "POST"
        assert answer.json() == {"error": "Method Not Allowed"}
