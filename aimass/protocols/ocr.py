"""Wire types for /v1/ocr: an image in, its text lines (text, confidence, box) out.

No standard API exists for OCR; the shape follows what OCR services return (PaddleOCR's
``[box, text, score]`` per line, as named fields) with OpenAI's conventions around it
(``model``, ``object``, ``usage``). The image comes as a multipart ``file`` upload or, in JSON,
as ``image``: a ``data:image/...;base64,`` URL or bare base64. Remote URLs are not fetched.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class OcrRequest(BaseModel):
    """The JSON form of a request (the multipart form has the same fields, ``file`` for
    ``image``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    model: StrictStr = Field(min_length=1)
    image: StrictStr = Field(min_length=1)
    """A data URL (``data:image/png;base64,...``) or base64 of PNG, JPEG, WebP, GIF, BMP or
    TIFF bytes."""


class OcrLine(BaseModel):
    text: str
    confidence: float
    box: list[list[float]]
    """Four ``[x, y]`` corners in pixels, clockwise from the top left."""


class OcrUsage(BaseModel):
    images: int


class OcrResponse(BaseModel):
    object: Literal["ocr"] = "ocr"
    model: str
    text: str
    """Every line's text in reading order (top to bottom, left to right), one a line."""
    lines: list[OcrLine]
    usage: OcrUsage


class OcrForm(BaseModel):
    """The multipart form's fields other than the ``file``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
