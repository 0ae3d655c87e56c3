"""The OCR runtime: an encoded image in, text lines with boxes and confidences out.

One row is one image file (``bytes``); it is decoded here, in the replica process, under the
spec's image limits (``media.image``), so a large or hostile file costs the replica, never the
server's event loop. RapidOCR does not batch across images: rows are read one after another
and a replica computes one batch at a time, which is the bounded concurrency per replica
(``replicas`` sets how many images are read at once).

Each row's answer is one JSON text (``result``): ``{"lines": [{"text", "confidence", "box"}]}``
with boxes as four ``[x, y]`` corners clockwise from the top left, in reading order (top to
bottom, then left to right, as PP-OCR's detector sorts them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson

from aimass.errors import InvalidInput
from aimass.media.image import ImageLimits, decode_image
from aimass.runtimes.base import Payload, Runtime, TensorInfo
from aimass.runtimes.ocr.layout import ocr_files
from aimass.spec import ModelSpec

IMAGE, RESULT = "image", "result"


class OcrRuntime(Runtime):
    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.engine: Any = None
        self.limits = ImageLimits(spec.limits.max_image_bytes, spec.limits.max_image_pixels)

    def load(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        files = ocr_files(Path(self.spec.source))
        paths = {"det_model_path": files.det, "rec_model_path": files.rec}
        if files.cls is not None:
            paths["cls_model_path"] = files.cls
        if files.keys is not None:
            paths["rec_keys_path"] = files.keys
        self.engine = RapidOCR(
            **{k: str(v) for k, v in paths.items()},
            use_cls=files.cls is not None,
            intra_op_num_threads=self.spec.threads,
            inter_op_num_threads=1,
        )

    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(IMAGE, "BYTES", [-1])]

    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(RESULT, "BYTES", [-1])]

    def describe(self) -> dict[str, Any]:
        """``modality: image``: v2 requests keep binary ``BYTES`` elements as file bytes."""
        return {"task": "ocr", "modality": "image"}

    def infer(self, batch: Payload) -> Payload:
        results = np.empty(len(batch[IMAGE]), dtype=object)
        for i, data in enumerate(batch[IMAGE]):
            results[i] = orjson.dumps({"lines": self.read(_file(data))}).decode()
        return {RESULT: results}

    def read(self, data: bytes) -> list[dict[str, Any]]:
        """The lines of one encoded image (limits checked before it is decoded)."""
        image = decode_image(data, self.limits, param=IMAGE)
        found, _ = self.engine(image)
        return [
            {"text": text, "confidence": float(score), "box": _corners(box)}
            for box, text, score in found or []
        ]


def _file(value: Any) -> bytes:
    """A row's encoded image; text (a v2 JSON ``BYTES`` element) is the client's 400."""
    if isinstance(value, bytes):
        return value
    raise InvalidInput(
        f"{IMAGE} must be the bytes of an image file (over v2: a binary BYTES element)",
        param=IMAGE,
    )


def _corners(box: Any) -> list[list[float]]:
    return [[float(x), float(y)] for x, y in np.asarray(box, dtype=np.float64).reshape(4, 2)]
