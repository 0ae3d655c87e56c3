"""One decoded image → the model's input pixels, as the spec's options say.

Runs in the replica process, per row of a batch: resize (stretch, centre crop or pad), channel
order, then ``pixel × a + b`` per channel (``a = scale / std``, ``b = −mean / std``) in float32,
or the pixels as they are for a ``uint8`` input. ``stack`` puts the rows into the layout the
model takes (NCHW or NHWC).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from aimass.runtimes.vision.options import VisionOptions

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


class Preprocessor:
    """Turns RGB ``PIL`` images into rows of the model's input tensor."""

    def __init__(self, options: VisionOptions, dtype: np.dtype):
        self.options = options
        self.height, self.width = options.hw
        self.dtype = np.dtype(dtype)
        self.resample = _RESAMPLE[options.resample]
        std = np.asarray(options.std, dtype=np.float32)
        self.a = np.broadcast_to(np.float32(options.scale) / std, (3,)).astype(np.float32)
        self.b = np.broadcast_to(-np.asarray(options.mean, np.float32) / std, (3,)).astype(
            np.float32
        )

    def pixels(self, image: Image.Image) -> np.ndarray:
        """One image as an HWC array of the model's dtype."""
        resized = self.resize(image)
        array = np.asarray(resized)
        if self.options.channel_order == "BGR":
            array = array[:, :, ::-1]
        if self.dtype == np.uint8:
            return np.ascontiguousarray(array)
        return (array.astype(np.float32) * self.a + self.b).astype(self.dtype, copy=False)

    def resize(self, image: Image.Image) -> Image.Image:
        size = (self.width, self.height)
        mode = self.options.resize
        if mode == "stretch":
            return image.resize(size, self.resample)
        if mode == "crop":
            return image.resize(size, self.resample, box=self._crop_box(image))
        return self._pad(image)

    def _crop_box(self, image: Image.Image) -> tuple[float, float, float, float]:
        """The centred region of the target's aspect ratio, ``crop_fraction`` of the image."""
        w, h = image.size
        fraction = self.options.crop_fraction
        scale = min(w / self.width, h / self.height) * fraction
        cw, ch = self.width * scale, self.height * scale
        left, top = (w - cw) / 2, (h - ch) / 2
        return (left, top, left + cw, top + ch)

    def _pad(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        scale = min(self.width / w, self.height / h)
        fitted = (max(1, round(w * scale)), max(1, round(h * scale)))
        canvas = Image.new("RGB", (self.width, self.height))
        offset = ((self.width - fitted[0]) // 2, (self.height - fitted[1]) // 2)
        canvas.paste(image.resize(fitted, self.resample), offset)
        return canvas

    def stack(self, rows: list[np.ndarray]) -> np.ndarray:
        """Rows (HWC) as one batch in the model's layout."""
        batch = np.stack(rows)
        if self.options.layout == "NCHW":
            batch = batch.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(batch)
