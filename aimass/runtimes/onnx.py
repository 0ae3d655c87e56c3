"""ONNX models through onnxruntime; inputs, outputs, dtypes and shapes come from the model."""

from __future__ import annotations

from typing import Any

import numpy as np

from aimass.errors import InvalidInput
from aimass.runtimes.base import Payload, Runtime, TensorInfo
from aimass.runtimes.onnx_session import make_session, tensor_info


class OnnxRuntime(Runtime):
    def load(self) -> None:
        self.session = make_session(self.spec.source, self.spec.threads)
        self._inputs = [tensor_info(node) for node in self.session.get_inputs()]
        self._outputs = [tensor_info(node) for node in self.session.get_outputs()]

    def inputs(self) -> list[TensorInfo]:
        return self._inputs

    def outputs(self) -> list[TensorInfo]:
        return self._outputs

    def describe(self) -> dict[str, Any]:
        meta = self.session.get_modelmeta()
        return {"producer": meta.producer_name, "graph": meta.graph_name}

    def infer(self, batch: Payload) -> Payload:
        expected = {t.name for t in self._inputs}
        missing = expected - batch.keys()
        if missing:
            raise InvalidInput(
                f"missing inputs {sorted(missing)}; the model takes {sorted(expected)}"
            )
        feed = {name: batch[name] for name in expected}
        try:
            values = self.session.run(None, feed)
        except Exception as exc:  # onnxruntime reports shape/type problems as generic errors
            raise InvalidInput(f"onnxruntime rejected the input: {exc}") from None
        return {t.name: np.asarray(v) for t, v in zip(self._outputs, values, strict=True)}
