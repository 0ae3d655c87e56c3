"""ONNX models through onnxruntime; inputs, outputs, dtypes and shapes come from the model."""

from __future__ import annotations

from typing import Any

import numpy as np

from aimass.errors import InvalidInput
from aimass.runtimes.base import Payload, Runtime, TensorInfo

ORT_TO_V2 = {
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(float16)": "FP16",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(bool)": "BOOL",
    "tensor(string)": "BYTES",
}


def _shape(dims: list[Any]) -> list[int]:
    """Symbolic or unknown dimensions become -1, as the Open Inference Protocol writes them."""
    return [d if isinstance(d, int) and d >= 0 else -1 for d in dims]


def tensor_infos(nodes) -> list[TensorInfo]:
    return [TensorInfo(n.name, ORT_TO_V2.get(n.type, n.type), _shape(n.shape)) for n in nodes]


def make_session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


class OnnxRuntime(Runtime):
    def load(self) -> None:
        self.session = make_session(self.spec.source, self.spec.threads)
        self._inputs = tensor_infos(self.session.get_inputs())
        self._outputs = tensor_infos(self.session.get_outputs())

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
