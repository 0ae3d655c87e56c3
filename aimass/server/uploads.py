"""Multipart form uploads (``multipart/form-data``): the one reader of every route that takes
a file, in two ways.

- ``read_upload``: the form whole, for a file that goes to a model (OpenAI's audio API, OCR,
  image classification). Starlette parses it (python-multipart); its limits bound the work
  (one file, a few dozen fields, each field's text at most ``MAX_FIELD_BYTES``), and the body
  as a whole was already bounded by ``max_body_bytes`` in the middleware.
- ``receive_upload``: the form as it arrives, for the Files API: the file part is handed to a
  sink piece by piece (written to disk by the service, never held whole in memory) and
  checked against the size limit while the bytes arrive; writes run in a worker thread, a
  megabyte at a time, so the event loop never waits on the disk. (Starlette's
  ``request.form()`` would spool the file to a temporary file first, and the service would
  copy it a second time.)

A form that cannot be parsed is a 400, as is a missing file. ``multipart_body`` documents such
a body in the OpenAPI description.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.datastructures import UploadFile
from starlette.requests import Request

from aimass.errors import InvalidInput

MAX_FIELDS = 32
MAX_FIELD_BYTES = 64 * 1024
"""Longest form field other than the file (``purpose``, ``model`` and friends are a few bytes)."""
MULTIPART = "multipart/form-data"
WRITE_BYTES = 1024 * 1024
"""File bytes gathered before one write to the sink."""


@dataclass
class Upload:
    """A parsed form: the text fields (a list per name, in order) and the file's bytes."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    file: bytes | None = None
    filename: str | None = None

    def first(self) -> dict[str, str]:
        """Each field's first value, for a model of single-valued fields."""
        return {name: values[0] for name, values in self.fields.items() if values}


def is_multipart(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith(MULTIPART)


async def read_upload(request: Request, file_field: str) -> Upload:
    """The request's form, with the file from ``file_field`` (400 naming it when absent)."""
    if not is_multipart(request):
        raise InvalidInput(
            f"the request must be {MULTIPART} with the file in field {file_field!r}",
            param=file_field,
        )
    upload = Upload()
    async with request.form(
        max_files=1, max_fields=MAX_FIELDS, max_part_size=MAX_FIELD_BYTES
    ) as form:
        for name, value in form.multi_items():
            if isinstance(value, UploadFile):
                if name != file_field:
                    raise InvalidInput(
                        f"unexpected file in field {name!r}; send it as {file_field!r}",
                        param=name,
                    )
                upload.file, upload.filename = await value.read(), value.filename
            else:
                upload.fields.setdefault(name, []).append(value)
    if upload.file is None:
        raise InvalidInput(f"field {file_field!r} (the file) is required", param=file_field)
    return upload


def multipart_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    """``openapi_extra`` for a multipart body with these form fields."""
    schema = {"type": "object", "properties": properties, "required": required}
    return {"requestBody": {"required": True, "content": {MULTIPART: {"schema": schema}}}}


class Sink(Protocol):
    def write(self, data: bytes) -> None: ...

    def abort(self) -> None: ...


@dataclass(eq=False)
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    name: str = ""
    filename: str | None = None
    opened: bool = False
    data: bytearray = field(default_factory=bytearray)


class _Events:
    """python-multipart's callbacks, recorded for the async loop to act on."""

    def __init__(self) -> None:
        self.parts: list[_Part] = []
        self.ended: list[_Part] = []
        self._header = [b"", b""]

    def callbacks(self) -> dict:
        return {
            "on_part_begin": lambda: self.parts.append(_Part()),
            "on_part_data": lambda d, s, e: self.parts[-1].data.extend(d[s:e]),
            "on_part_end": lambda: self.ended.append(self.parts[-1]),
            "on_header_field": lambda d, s, e: self._add(0, d[s:e]),
            "on_header_value": lambda d, s, e: self._add(1, d[s:e]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
        }

    def _add(self, i: int, data: bytes) -> None:
        self._header[i] += data

    def _header_end(self) -> None:
        self.parts[-1].headers[self._header[0].lower()] = self._header[1]
        self._header = [b"", b""]

    def _headers_finished(self) -> None:
        part = self.parts[-1]
        _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            part.filename = options[b"filename"].decode("utf-8", "replace")


async def receive_upload(
    request: Request, begin: Callable[[str, str | None], Awaitable[Sink]]
) -> tuple[Sink, dict[str, str]]:
    """Read the form: the ``file`` part goes to the sink ``begin(filename, content_type)``
    returns; the other fields come back by name. The sink is aborted if anything fails."""
    boundary = _boundary(request.headers.get("content-type", ""))
    events, sink, fields = _Events(), None, {}
    parser = MultipartParser(boundary, events.callbacks())
    try:
        async for chunk in request.stream():
            _feed(parser, chunk)
            sink = await _drain(events, sink, begin, fields)
        _feed(parser, None)
        sink = await _drain(events, sink, begin, fields, final=True)
        if sink is None:
            raise InvalidInput("the form has no file part named 'file'", param="file")
        return sink, fields
    except BaseException:
        if sink is not None:
            await asyncio.to_thread(sink.abort)
        raise


def _boundary(content_type: str) -> bytes:
    kind, params = parse_options_header(content_type)
    if kind != MULTIPART.encode() or not params.get(b"boundary"):
        raise InvalidInput(
            "an upload is a multipart/form-data body with a 'file' part", param="file"
        )
    return params[b"boundary"]


def _feed(parser: MultipartParser, chunk: bytes | None) -> None:
    try:
        parser.write(chunk) if chunk is not None else parser.finalize()
    except FormParserError as exc:
        raise InvalidInput(f"malformed multipart body: {exc}", param="file") from None


async def _drain(events: _Events, sink, begin, fields: dict[str, str], final: bool = False):
    """Act on what the parser saw: open the sink, write file bytes, keep fields."""
    for part in events.parts:
        if part.filename is None:
            if len(part.data) > MAX_FIELD_BYTES:
                raise InvalidInput(f"form field {part.name!r} is too long", param="body")
            continue
        if part.name != "file" or (sink is not None and not part.opened):
            raise InvalidInput("the form may hold one file, in a part named 'file'", param="file")
        if not part.opened:
            ctype = part.headers.get(b"content-type", b"").decode("latin-1") or None
            sink, part.opened = await begin(part.filename, ctype), True
        if part.data and (part in events.ended or final or len(part.data) >= WRITE_BYTES):
            data, part.data = bytes(part.data), bytearray()
            await asyncio.to_thread(sink.write, data)
    for part in events.ended:
        if part.filename is None:
            if len(fields) >= MAX_FIELDS:
                raise InvalidInput(f"more than {MAX_FIELDS} form fields", param="body")
            fields[part.name] = part.data.decode("utf-8", "replace")
        events.parts.remove(part)
    events.ended.clear()
    return sink
