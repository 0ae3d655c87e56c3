"""A batch's input file checked whole before any line runs: every invalid line is reported with
its number, and one invalid line fails the batch (as OpenAI does).

A line is ``{"custom_id": str, "method": "POST", "url": <the batch's endpoint>, "body": {...}}``;
the body must be a valid request of that endpoint (the wire types the online routes use), not
streamed, and every line must name the same model. Blank lines are skipped; numbers count
every line of the file from 1.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from aimass.errors import InvalidInput
from aimass.protocols import openai as oa
from aimass.protocols.embeddings import EmbeddingRequest, RerankRequest
from aimass.protocols.v2 import InferenceRequest
from aimass.refs import split_model

REQUEST_MODELS: dict[str, type[BaseModel]] = {
    "/v1/chat/completions": oa.ChatCompletionRequest,
    "/v1/completions": oa.CompletionRequest,
    "/v1/embeddings": EmbeddingRequest,
    "/v1/rerank": RerankRequest,
}
V2_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/([0-9]+))?/infer$")
MAX_ERRORS = 1000
"""Most line errors one batch reports (the rest of a broken file adds nothing)."""


@dataclass(frozen=True)
class Line:
    """One valid request of a batch: its place in the file (from 0) and what to send."""

    index: int
    number: int
    """Its line number in the file (from 1), for messages."""
    custom_id: str
    body: dict[str, Any]
    model: str


def check_endpoint(endpoint: str) -> None:
    if endpoint not in REQUEST_MODELS and not V2_INFER.match(endpoint):
        known = ", ".join([*REQUEST_MODELS, "/v2/models/{name}/infer"])
        raise InvalidInput(
            f"endpoint {endpoint!r} is not one a batch can use: {known}", param="endpoint"
        )


def request_model(endpoint: str) -> type[BaseModel]:
    return REQUEST_MODELS.get(endpoint, InferenceRequest)


def endpoint_model(endpoint: str) -> str | None:
    """The model a v2 endpoint names (``name`` or ``name:version``); None for /v1 endpoints."""
    match = V2_INFER.match(endpoint)
    if match is None:
        return None
    name, version = match.groups()
    return f"{name}:{version}" if version else name


class _Checker:
    def __init__(self, endpoint: str, serves: Callable[[str], bool]) -> None:
        self.endpoint, self.serves = endpoint, serves
        self.model_type = request_model(endpoint)
        self.model: str | None = endpoint_model(endpoint)
        self.seen: set[str] = set()
        self.errors: list[dict[str, Any]] = []

    def fail(self, number: int, code: str, message: str, param: str | None = None) -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append({"code": code, "line": number, "message": message, "param": param})

    def line(self, index: int, number: int, raw: bytes) -> Line | None:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            return self.fail(number, "invalid_json_line", f"line {number} is not JSON: {exc}")
        if not isinstance(data, dict):
            return self.fail(number, "invalid_json_line", f"line {number} is not a JSON object")
        custom_id = data.get("custom_id")
        if not isinstance(custom_id, str) or not custom_id:
            return self.fail(
                number, "missing_custom_id", "custom_id must be a non-empty string", "custom_id"
            )
        if custom_id in self.seen:
            return self.fail(
                number,
                "duplicate_custom_id",
                f"custom_id {custom_id!r} is used by an earlier line",
                "custom_id",
            )
        self.seen.add(custom_id)
        if data.get("method") != "POST":
            return self.fail(number, "invalid_method", "method must be 'POST'", "method")
        if data.get("url") != self.endpoint:
            return self.fail(
                number,
                "invalid_url",
                f"url {data.get('url')!r} is not the batch's endpoint {self.endpoint!r}",
                "url",
            )
        return self._body(index, number, custom_id, data.get("body"))

    def _body(self, index: int, number: int, custom_id: str, body: Any) -> Line | None:
        if not isinstance(body, dict):
            return self.fail(number, "invalid_request", "body must be a JSON object", "body")
        try:
            request = self.model_type.model_validate(body)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err.get("loc", ())) or "body"
            return self.fail(
                number, "invalid_request", f"body.{where}: {err.get('msg')}", f"body.{where}"
            )
        if getattr(request, "stream", False):
            return self.fail(
                number, "invalid_request", "a batch request cannot stream", "body.stream"
            )
        model = endpoint_model(self.endpoint) or getattr(request, "model", "")
        try:
            split_model(model)
        except InvalidInput as exc:
            return self.fail(number, "invalid_request", exc.message, "body.model")
        if self.model is None:
            self.model = model
        elif model != self.model:
            return self.fail(
                number,
                "mismatched_model",
                f"model {model!r} differs from {self.model!r}: every request of "
                "a batch must use the same model",
                "body.model",
            )
        return Line(index, number, custom_id, body, model)


def validate(
    data: bytes, endpoint: str, max_lines: int, serves: Callable[[str], bool]
) -> tuple[list[Line], list[dict[str, Any]]]:
    """The valid lines, and an error (``code``, ``line``, ``message``, ``param``) per invalid
    one; ``serves(name)`` says whether the server has the model a line names."""
    checker = _Checker(endpoint, serves)
    lines: list[Line] = []
    for number, raw in enumerate(data.split(b"\n"), start=1):
        if not raw.strip():
            continue
        if len(lines) + len(checker.errors) >= max_lines:
            checker.fail(
                number,
                "too_many_requests",
                f"the file has more than {max_lines} requests (setting batch_max_lines)",
            )
            break
        line = checker.line(len(lines), number, raw)
        if line is not None:
            lines.append(line)
    if not lines and not checker.errors:
        checker.fail(1, "empty_file", "the input file has no requests")
    if checker.model is not None and lines and not serves(split_model(checker.model)[0]):
        checker.fail(
            lines[0].number,
            "model_not_found",
            f"the server does not serve model {checker.model!r}",
            "body.model",
        )
    return lines, checker.errors
