"""Multipart form uploads (``multipart/form-data``), read one way for every route that takes
a file: OpenAI's audio API, OCR.

Starlette parses the form (with python-multipart); its limits bound the work: one file, a few
dozen fields, each field's text at most ``MAX_FIELD_BYTES``; the body as a whole was already
bounded by ``max_body_bytes`` in the middleware. A form that cannot be parsed is a 400, as
is a missing file. ``multipart_body`` documents such a body in the OpenAPI description.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request

from aimass.errors import InvalidInput

MAX_FIELDS = 32
MAX_FIELD_BYTES = 64 * 1024
MULTIPART = "multipart/form-data"


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
