"""int8 quantization of an exported encoder in which no row depends on another.

onnxruntime's ``quantize_dynamic`` quantizes each MatMul's activations with one scale for the
whole tensor (``DynamicQuantizeLinear``), so a text's embedding changed with whatever shared
its batch or how far it was padded (cosine 0.93 to itself alone, measured on
all-MiniLM-L6-v2). Here every MatMul whose weights are a constant becomes:

* each activation row (one token) **centred and scaled by its own minimum and maximum**:
  ``q = round((x - mid) / step) + 128`` in uint8, where ``mid`` and ``step`` come from that
  row only;
* weights in int8 per output column, symmetric in **7 bits** (±63): on x86 CPUs without VNNI
  the u8×s8 kernel (``vpmaddubsw``) adds pairs of products in int16, which saturates with
  8-bit weights against full-range activations (mean cosine 0.978 measured); 7 bits cannot;
* onnxruntime's ``MatMulIntegerToFloat`` (exact integer products, the column scales applied
  in the kernel), then ``× step`` and ``+ mid × column sums`` per row, which restores what
  the centring took out: ``x·W = (x - mid)·W + mid·Σ_k W``.

Integer arithmetic is exact and every other step reads one row, so a row's result is the same
bits whatever the batch holds or how far it is padded (measured, with the fp32 operators
around: attention, LayerNorm, GELU). The file needs onnxruntime (a ``com.microsoft``
operator), which is what serves it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

RECIPE = "onnx-int8-row-activations-7bit-column-weights"
"""Names this recipe in the quality gate's record; a cached variant made by another is rebuilt."""
WEIGHT_MAX = 63
LEVELS = 255.0
ZERO_POINT = 128
MS_DOMAIN = "com.microsoft"


def quantize_int8(fp32_path: Path, int8_path: Path) -> Path:
    """Rewrite every constant-weight fp32 MatMul of ``fp32_path`` as described above."""
    import onnx

    model = onnx.load(str(fp32_path))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 17)
    rewrite = _Rewrite(opset)
    nodes = []
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2 or weight.data_type != onnx.TensorProto.FLOAT:
            nodes.append(node)
            continue
        nodes.extend(rewrite.matmul(node, onnx.numpy_helper.to_array(weight)))
    used = {name for node in nodes for name in node.input}
    kept = [t for t in [*graph.initializer, *rewrite.constants] if t.name in used]
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    if rewrite.count and not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(MS_DOMAIN, 1))
    onnx.save(model, str(int8_path))
    return int8_path


class _Rewrite:
    """Makes the nodes and constants of the quantized MatMuls, named uniquely."""

    def __init__(self, opset: int) -> None:
        self.opset = opset
        self.constants: list = []
        self.count = 0
        self.tiny = self._constant("rowq/tiny", np.array(1e-12, np.float32))
        self.levels = self._constant("rowq/levels", np.array(LEVELS, np.float32))
        self.half = self._constant("rowq/half", np.array(0.5, np.float32))
        self.one = self._constant("rowq/one", np.array(1.0, np.float32))
        self.zero_point = self._constant("rowq/zero_point", np.array(ZERO_POINT, np.uint8))

    def matmul(self, node, weight: np.ndarray) -> list:
        """Nodes computing ``node``'s output (``x @ weight``) from per-row int8 activations."""
        from onnx import helper

        self.count += 1
        prefix = f"rowq/{self.count}/"
        scale = (np.maximum(np.abs(weight).max(axis=0), 1e-12) / WEIGHT_MAX).astype(np.float32)
        quantized = np.clip(np.round(weight / scale), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
        column_sums = (quantized.astype(np.float64).sum(axis=0) * scale).astype(np.float32)
        w = self._constant(prefix + "w", quantized)
        w_scale = self._constant(prefix + "w_scale", scale)
        sums = self._constant(prefix + "column_sums", column_sums)
        nodes: list = []

        def op(kind: str, inputs: list[str], name: str, **attrs) -> str:
            nodes.append(helper.make_node(kind, inputs, [prefix + name], prefix + name, **attrs))
            return prefix + name

        x = node.input[0]
        if self.opset >= 18:  # the axes became an input
            last = self._constant(prefix + "last_axis", np.array([-1], np.int64))
            low = op("ReduceMin", [x, last], "low", keepdims=1)
            high = op("ReduceMax", [x, last], "high", keepdims=1)
        else:
            low = op("ReduceMin", [x], "low", axes=[-1], keepdims=1)
            high = op("ReduceMax", [x], "high", axes=[-1], keepdims=1)
        mid = op("Mul", [op("Add", [low, high], "low_high"), self.half], "mid")
        step = op("Div", [op("Sub", [high, low], "range"), self.levels], "step0")
        step = op("Max", [step, self.tiny], "step")
        scaled = op("Div", [op("Sub", [x, mid], "centred"), step], "scaled")
        x_q = op("QuantizeLinear", [scaled, self.one, self.zero_point], "x_q")
        inputs = [x_q, w, self.one, w_scale, self.zero_point]
        product = op("MatMulIntegerToFloat", inputs, "product", domain=MS_DOMAIN)
        restored = op("Mul", [product, step], "restored")
        offset = op("Mul", [mid, sums], "offset")
        nodes.append(helper.make_node("Add", [restored, offset], list(node.output), node.name))
        return nodes

    def _constant(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.constants.append(numpy_helper.from_array(value, name))
        return name
