"""The work behind /v1/ocr, callable without HTTP: one image in, its text lines out.

The image's bytes go to the model's replica as they came; decoding (under the model's
``max_image_bytes`` / ``max_image_pixels``) and recognition happen there, never on the event
loop. The byte limit is checked here too, so an oversized upload is refused before it crosses
the pipe. Usage counts one unit per image (``prompt_tokens`` in the usage records, so a key's
rate and budget limits cover OCR too).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from aimass.errors import InvalidInput, PayloadTooLarge
from aimass.refs import split_model
from aimass.serving.pipeline import CallContext, ModelCall, Pipeline

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


def check_upload(
    call: ModelCall, ref: str, task: str, path: str, size: int, limit: str, param: str
) -> None:
    """Refuse a model of another task (400), an empty file (400) or one over the model's
    byte limit ``limit`` (413), before the file is sent to a replica."""
    spec = call.deployment.spec
    if spec.task != task:
        raise InvalidInput(
            f"model {ref!r} has task {spec.task!r}; {path} needs a {task!r} model", param="model"
        )
    if size == 0:
        raise InvalidInput(f"{param} is empty (0 bytes)", param=param)
    most = getattr(spec.limits, limit)
    if size > most:
        raise PayloadTooLarge(
            f"{param} is {size} bytes, over the model's limit {limit}={most}", param=param
        )


def blobs(*items: bytes) -> np.ndarray:
    """A 1-d object array of encoded files (one row each), as a replica receives them."""
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array
