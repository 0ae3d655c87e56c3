"""The one way this package opens an onnxruntime session, and reads its tensors as v2 sees them.

Used by the ONNX runtime, the tabular runtime's ONNX format and the text runtime's ONNX backend,
so every ONNX model in a replica runs with the same options: CPU provider, the spec's thread
count for one operator, one thread across operators (a replica computes one batch at a time),
all graph optimizations.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aimass.dtypes import ORT_TO_V2
from aimass.errors import InvalidInput
from aimass.runtimes.base import TensorInfo


def make_session(path: str | Path, threads: int, *, spinning: bool = True) -> Any:
    """An ``InferenceSession`` for ``path``; a file onnxruntime cannot read is InvalidInput.

    ``spinning=False`` makes idle operator threads sleep at once instead of spinning for the
    next batch: the text runtime takes that, so its threads leave the cores to the HTTP
    server between batches; onnxruntime's default (spin) is the fastest for back-to-back work.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable files
        raise InvalidInput(f"cannot read ONNX model {str(path)!r}: {exc}") from exc


def tensor_info(node: Any) -> TensorInfo:
    """A session input or output (``NodeArg``) as the Open Inference Protocol describes it:
    the v2 datatype (onnxruntime's own type string when v2 has none), symbolic or unknown
    dimensions as -1."""
    shape = [d if isinstance(d, int) and d >= 0 else -1 for d in node.shape]
    return TensorInfo(node.name, ORT_TO_V2.get(node.type, node.type), shape)
