"""The work behind /v1/ocr, callable without HTTP: one image in, its text lines out.

The image's bytes go to the model's replica as they came; decoding (under the model's
``max_image_bytes`` / ``max_image_pixels``) and recognition happen there, never on the event
loop. The byte limit is checked here too, so an oversized upload is refused before it crosses
the pipe. Usage counts one unit per image (``prompt_tokens`` in the usage records, so a key's
rate and budget limits cover OCR too).
"""

from __future__ import annotations

from typing import Any

import orjson

from aimass.refs import split_model
from aimass.serving.encoded import blobs, check_upload
from aimass.serving.pipeline import CallContext, Pipeline

TASK = "ocr"


class OcrService:
    """OCR over the pipeline; one per server."""

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline

    async def read(self, ctx: CallContext, model: str, image: bytes) -> dict[str, Any]:
        """The lines of ``image`` (an encoded file) as read by ``model``."""
        name, version = split_model(model)
        async with self.pipeline.call(ctx, name, version, estimate=1) as call:
            check_upload(call, model, TASK, "/v1/ocr", len(image), "max_image_bytes", "image")
            out = await call.infer({"image": blobs(image)})
            call.tokens(prompt=1)
        lines = orjson.loads(out["result"][0])["lines"]
        return {
            "object": "ocr",
            "model": model,
            "text": "\n".join(line["text"] for line in lines),
            "lines": lines,
            "usage": {"images": 1},
        }
