"""Image classification and image embeddings over onnxruntime.

The model takes encoded image files (v2 ``BYTES``, one per row, as ``bytes``: services turn
data URLs and base64 into bytes before batching, so a batch never mixes text and bytes).
Decoding, resizing and normalizing happen here, in the replica process, so the server's event
loop never touches pixels. Each row is decoded under the spec's image limits
(``aimass.media.image``): a row that is not an image, or is over a limit, fails alone (400 or
413) and the rest of the batch is computed.

Outputs, FP32 with the batch's rows on axis 0:
- task ``classification``: ``probabilities`` [N, classes] (the model's output through a softmax,
  unless ``options.softmax`` is false); the class names come from ``options.labels`` and are
  reported by ``describe`` so services can name the top classes;
- task ``embedding``: ``embedding`` [N, dimensions], unit length unless ``options.normalize``
  is false.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aimass.errors import AimassError, InvalidInput
from aimass.media.image import ImageLimits, decode_image
from aimass.runtimes.base import ROW_ERRORS, Payload, Runtime, TensorInfo
from aimass.runtimes.onnx_session import make_session
from aimass.runtimes.vision.options import read_labels, read_options
from aimass.runtimes.vision.preprocess import Preprocessor

TASKS = ("classification", "embedding")
INPUT = "image"
OUTPUTS = {"classification": "probabilities", "embedding": "embedding"}
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(uint8)": np.uint8}


class VisionRuntime(Runtime):
    def load(self) -> None:
        spec = self.spec
        if spec.task not in TASKS:
            raise InvalidInput(
                f"runtime 'vision' serves tasks {', '.join(TASKS)}, not {spec.task!r}",
                param="task",
            )
        self.options = read_options(spec)
        self.limits = ImageLimits(spec.limits.max_image_bytes, spec.limits.max_image_pixels)
        self.session = make_session(spec.source, spec.threads)
        node = self._input_node()
        self.input_name = node.name
        self.one_per_run = isinstance(node.shape[0], int) and node.shape[0] == 1
        self.preprocessor = Preprocessor(self.options, _DTYPES[node.type])
        self.output_name, self.width = self._output_node()
        self.labels = read_labels(spec, self.options)
        if spec.task == "classification" and self.labels is not None:
            self._check_labels()

    def _input_node(self) -> Any:
        nodes = self.session.get_inputs()
        wanted = self.options.input
        if wanted is None and len(nodes) != 1:
            raise InvalidInput(
                f"the model has inputs {[n.name for n in nodes]}; name the image's in "
                "options.input",
                param="options.input",
            )
        node = next((n for n in nodes if wanted in (None, n.name)), None)
        if node is None:
            raise InvalidInput(
                f"options.input {wanted!r} is not an input of the model "
                f"({[n.name for n in nodes]})",
                param="options.input",
            )
        if len(node.shape) != 4 or node.type not in _DTYPES:
            raise InvalidInput(
                f"input {node.name!r} is {node.type} {node.shape}; an image input is a 4-d "
                "float, float16 or uint8 tensor",
                param="options.input",
            )
        self._check_size(node.shape)
        return node

    def _check_size(self, shape: list) -> None:
        spatial = shape[2:] if self.options.layout == "NCHW" else shape[1:3]
        fixed = [d for d in spatial if isinstance(d, int)]
        if len(fixed) == 2 and tuple(fixed) != self.options.hw:
            raise InvalidInput(
                f"the model takes {fixed[0]}x{fixed[1]} images ({self.options.layout} "
                f"{shape}); options.size is {list(self.options.hw)}",
                param="options.size",
            )

    def _output_node(self) -> tuple[str, int]:
        nodes = self.session.get_outputs()
        wanted = self.options.output
        node = next((n for n in nodes if wanted in (None, n.name)), None)
        if node is None:
            raise InvalidInput(
                f"options.output {wanted!r} is not an output of the model "
                f"({[n.name for n in nodes]})",
                param="options.output",
            )
        if len(node.shape) != 2:
            raise InvalidInput(
                f"output {node.name!r} has shape {node.shape}; task {self.spec.task!r} reads "
                "a 2-d output [batch, values]",
                param="options.output",
            )
        width = node.shape[1] if isinstance(node.shape[1], int) else -1
        return node.name, width

    def _check_labels(self) -> None:
        if self.width > 0 and len(self.labels) != self.width:
            raise InvalidInput(
                f"options.labels has {len(self.labels)} names; the model has {self.width} classes",
                param="options.labels",
            )

    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(INPUT, "BYTES", [-1])]

    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(OUTPUTS[self.spec.task], "FP32", [-1, self.width])]

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"modality": "image", "image_size": list(self.options.hw)}
        if self.spec.task == "classification":
            info["labels"] = self.labels
            info["classes"] = self.width
        else:
            info["dimensions"] = self.width
            info["normalize"] = self.options.normalize
        return info

    def infer(self, batch: Payload) -> Payload:
        items = batch.get(INPUT)
        if items is None:
            raise InvalidInput(f"missing input {INPUT!r}; the model takes {[INPUT]}")
        rows, errors = self._pixels(items.reshape(-1))
        values = self._run(rows) if rows else np.zeros((0, max(self.width, 0)), np.float32)
        out = np.zeros((len(errors), values.shape[1]), np.float32)
        ok = [i for i, e in enumerate(errors) if e is None]
        out[ok] = self._finish(values)
        result: Payload = {OUTPUTS[self.spec.task]: out}
        if len(ok) < len(errors):
            result[ROW_ERRORS] = errors
        return result

    def _pixels(self, items: np.ndarray) -> tuple[list[np.ndarray], list[AimassError | None]]:
        rows: list[np.ndarray] = []
        errors: list[AimassError | None] = []
        for item in items:
            try:
                rows.append(self.preprocessor.pixels(self._decode(item)))
                errors.append(None)
            except AimassError as exc:
                errors.append(exc)
        return rows, errors

    def _decode(self, item: Any):
        if not isinstance(item, bytes):
            raise InvalidInput(f"an image is an encoded file (bytes), not {type(item).__name__}")
        return decode_image(item, self.limits)

    def _run(self, rows: list[np.ndarray]) -> np.ndarray:
        if self.one_per_run:
            parts = [self._session_run(self.preprocessor.stack([row])) for row in rows]
            return np.concatenate(parts)
        return self._session_run(self.preprocessor.stack(rows))

    def _session_run(self, pixels: np.ndarray) -> np.ndarray:
        (values,) = self.session.run([self.output_name], {self.input_name: pixels})
        return np.asarray(values, dtype=np.float32).reshape(len(pixels), -1)

    def _finish(self, values: np.ndarray) -> np.ndarray:
        if self.spec.task == "classification" and self.options.softmax:
            shifted = np.exp(values - values.max(axis=1, keepdims=True))
            return shifted / shifted.sum(axis=1, keepdims=True)
        if self.spec.task == "embedding" and self.options.normalize:
            return values / np.maximum(np.linalg.norm(values, axis=1, keepdims=True), 1e-12)
        return values
