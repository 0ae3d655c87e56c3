"""The options of a ``vision`` model: how an image becomes the model's input tensor.

Read from ``ModelSpec.options`` and checked by pydantic, so a wrong option is refused at
registration naming the field (``options.mean: ...``). The pixel arithmetic is
``(pixel × scale − mean) / std`` per channel, pixels being 0–255: EfficientNet-Lite's
``(x − 127) / 128`` is ``mean=127, std=128``; torchvision's ImageNet normalization is
``scale=1/255, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]``. A model whose input
is ``uint8`` takes the resized pixels as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from aimass.errors import InvalidInput
from aimass.spec import ModelSpec

Triple = tuple[float, float, float]


class VisionOptions(BaseModel):
    """Preprocessing and output handling of one image model (``options`` of its spec)."""

    model_config = ConfigDict(extra="forbid")

    size: int | tuple[int, int] = 224
    """Input size: one number (square) or ``[height, width]``."""
    resize: Literal["stretch", "crop", "pad"] = "stretch"
    """``stretch`` to the size; ``crop``: the centre ``crop_fraction`` of the shorter side,
    resized (the usual ImageNet evaluation); ``pad``: fit inside, padded with black."""
    crop_fraction: float = Field(default=0.875, gt=0, le=1)
    resample: Literal["nearest", "bilinear", "bicubic"] = "bilinear"
    scale: float = Field(default=1.0, gt=0)
    mean: float | Triple = 0.0
    std: float | Triple = 1.0
    layout: Literal["NCHW", "NHWC"] = "NCHW"
    channel_order: Literal["RGB", "BGR"] = "RGB"
    labels: str | list[str] | None = None
    """The class names in the order of the model's outputs: a list, or a text file with one
    name per line, read where it is (an absolute path, or relative to the model file's folder;
    ``aimass models add`` copies the model file only, so give it an absolute path there).
    Without labels, classes are named by their index."""
    input: str | None = None
    """The ONNX input that takes the image (default: the model's only input)."""
    output: str | None = None
    """The ONNX output this task reads (default: the model's first output)."""
    softmax: bool = True
    """Classification: turn the output into probabilities (false when it already is)."""
    normalize: bool = True
    """Embedding: scale each vector to unit length."""

    @field_validator("size")
    @classmethod
    def _positive(cls, value):
        sizes = (value,) if isinstance(value, int) else value
        if any(not 1 <= s <= 4096 for s in sizes):
            raise ValueError("sizes must be between 1 and 4096 pixels")
        return value

    @field_validator("std")
    @classmethod
    def _nonzero(cls, value):
        if any(s == 0 for s in ((value,) if isinstance(value, float | int) else value)):
            raise ValueError("std must not be 0")
        return value

    @property
    def hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else self.size

    def labels_path(self, spec: ModelSpec) -> Path | None:
        if not isinstance(self.labels, str):
            return None
        path = Path(self.labels)
        return path if path.is_absolute() else Path(spec.source).parent / path


def read_options(spec: ModelSpec) -> VisionOptions:
    """The spec's options checked; a wrong one is InvalidInput naming ``options.<field>``."""
    try:
        return VisionOptions.model_validate(spec.options)
    except ValidationError as exc:
        problems = "; ".join(
            f"options.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise InvalidInput(f"model {spec.name!r}: {problems}", param="options") from None


def read_labels(spec: ModelSpec, options: VisionOptions) -> list[str] | None:
    """The class names: the list given, or the file's lines (blank lines at the end ignored)."""
    if isinstance(options.labels, list):
        return options.labels
    path = options.labels_path(spec)
    if path is None:
        return None
    if not path.is_file():
        raise InvalidInput(
            f"model {spec.name!r}: labels file {path} does not exist", param="options.labels"
        )
    return path.read_text(encoding="utf-8").rstrip("\n").split("\n")
