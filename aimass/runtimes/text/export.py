"""Export a text model to ONNX and quantize it to int8 (per-channel, MatMul only).

Per-channel weights on the MatMuls alone keep all-MiniLM-L6-v2 within cosine 0.99 of the
fp32 model, where onnxruntime's default dynamic quantization drifts to about 0.96 (measured,
see docs/embeddings.md); the quality gate in ``aimass.provision.optimize`` checks every
variant anyway before it may serve.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from pathlib import Path

from aimass.runtimes.text.backends import MODEL_INPUTS, load_torch_model
from aimass.runtimes.text.layout import TextLayout

OPSET = 17


def export_onnx(layout: TextLayout, path: Path) -> Path:
    """Write the fp32 model as ONNX with dynamic batch and sequence axes; returns ``path``."""
    import torch

    model = load_torch_model(layout, attn_implementation="eager")
    accepted = inspect.signature(model.forward).parameters
    names = [n for n in MODEL_INPUTS if n in accepted]
    output = "last_hidden_state" if layout.kind == "encoder" else "logits"
    wrapper = _first_output(model, names)
    examples = tuple(_example_input(name, torch) for name in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[output] = {0: "batch", 1: "sequence"} if layout.kind == "encoder" else {0: "batch"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(), warnings.catch_warnings():
        # The tracer warns about Python-level branches on shapes; the exported graph is
        # checked against the fp32 model by the quality gate, which is what matters.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            examples,
            str(path),
            input_names=names,
            output_names=[output],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    return path


def quantize_int8(fp32_path: Path, int8_path: Path) -> Path:
    """Dynamic int8 quantization of the MatMul weights, one scale per output channel."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantizer logs advice on the root logger
    try:
        quantize_dynamic(
            str(fp32_path),
            str(int8_path),
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            weight_type=QuantType.QInt8,
        )
    finally:
        root.setLevel(level)
    return int8_path


def _example_input(name: str, torch):
    """Example inputs whose mask holds padding, so the traced graph keeps the masking path."""
    tensor = torch.ones((2, 8), dtype=torch.int64)
    if name == "attention_mask":
        tensor[1, 5:] = 0
    elif name == "token_type_ids":
        tensor.zero_()
    return tensor


def _first_output(model, names: list[str]):
    """A module taking the inputs positionally and returning only the first output."""
    import torch

    class FirstOutput(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(**dict(zip(names, tensors, strict=True)))[0]

    return FirstOutput()
