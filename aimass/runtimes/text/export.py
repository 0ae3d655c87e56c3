"""Export a text model to ONNX (fp32), the input of the int8 recipe in ``text.quantize``."""

from __future__ import annotations

import inspect
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
