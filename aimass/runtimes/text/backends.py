"""The two ways a text model computes: PyTorch (fp32, the reference) and onnxruntime.

Both take the padded int64 tensors from ``text_batching.pad_rows`` and return the model's
first output as numpy: token states ``(rows, tokens, dim)`` for encoders, logits
``(rows, labels)`` for cross-encoders and classifiers. Pooling and scoring happen afterwards,
in one place (``text_pooling``), whichever backend ran.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from aimass.errors import InvalidInput
from aimass.runtimes.onnx_session import make_session
from aimass.runtimes.text.layout import TextLayout

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class TextBackend(Protocol):
    name: str

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The model's first output for one padded sub-batch."""


class TorchBackend:
    """A ``transformers`` model on the CPU in fp32, under ``inference_mode``."""

    name = "torch"

    def __init__(self, layout: TextLayout, threads: int):
        # Idle OpenMP threads spin by default and take the cores the HTTP server needs
        # between batches; read once, when torch first loads (so set before the import).
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        import torch

        torch.set_num_threads(threads)
        self._torch = torch
        self.model = load_torch_model(layout)
        accepted = inspect.signature(self.model.forward).parameters
        self.input_names = [n for n in MODEL_INPUTS if n in accepted]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self.model(**{n: torch.from_numpy(feeds[n]) for n in self.input_names})
        first = out.last_hidden_state if hasattr(out, "last_hidden_state") else out.logits
        return first.float().numpy()


class OnnxBackend:
    """An exported (and possibly quantized) ONNX graph run by onnxruntime on the CPU."""

    name = "onnx"

    def __init__(self, path: Path, threads: int, spinning: bool = False):
        if not path.exists():
            raise InvalidInput(
                f"ONNX file {path} does not exist (options.onnx)", param="options.onnx"
            )
        # Spinning worker threads burn the cores the HTTP server needs between batches.
        self.session = make_session(path, threads, spinning=spinning)
        self.input_names = [i.name for i in self.session.get_inputs()]
        unknown = set(self.input_names) - set(MODEL_INPUTS)
        if unknown:
            raise InvalidInput(f"ONNX file {path} has inputs this runtime cannot feed: {unknown}")

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, {n: feeds[n] for n in self.input_names})[0]


def load_torch_model(layout: TextLayout, **kwargs):
    """The fp32 ``transformers`` model a layout describes, in eval mode."""
    from transformers import AutoModel, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    factory = AutoModel if layout.kind == "encoder" else AutoModelForSequenceClassification
    try:
        model = factory.from_pretrained(str(layout.model_dir), **kwargs)
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"{layout.model_dir}: cannot load the model ({exc})") from exc
    return model.float().eval()


def onnx_path(source: str, option: str) -> Path:
    """``options.onnx`` as a path; a relative one is taken inside the model folder."""
    path = Path(option)
    return path if path.is_absolute() else Path(source) / path


def create_backend(source: str, options: dict, layout: TextLayout, threads: int) -> TextBackend:
    """ONNX when ``options.onnx`` names a file, else PyTorch."""
    if options.get("onnx"):
        path = onnx_path(source, str(options["onnx"]))
        return OnnxBackend(path, threads, bool(options.get("onnx_spinning", False)))
    return TorchBackend(layout, threads)
