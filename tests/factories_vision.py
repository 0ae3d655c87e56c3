"""Images and image models for the vision tests: EfficientNet-Lite0 built once per test run,
a tiny colour classifier made with onnx.helper, and scikit-image's sample photos."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageDraw, ImageFont

from tests.conftest import _save

PHOTOS = ("coffee", "chelsea", "astronaut", "rocket")
"""scikit-image's ``data`` photos used to check the built-in classifier."""
SENSIBLE = {
    "coffee": {"espresso", "cup", "coffee mug"},
    "chelsea": {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat"},
}
COLOURS = ["red", "green", "blue", "gray"]
CJK_FONTS = [
    Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc"),
    Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc"),
    Path("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"),
]
FONT = next((f for f in CJK_FONTS if f.exists()), None)
"""A font with Chinese and Latin glyphs to render OCR test pages (``None``: not installed;
``apt-get install -y fonts-wqy-microhei``, as ``.ci/run`` does)."""


def render(lines: list[str]) -> bytes:
    """A white PNG with ``lines`` in black, 36 px, one below the other (needs ``FONT``)."""
    font = ImageFont.truetype(str(FONT), 36)
    image = Image.new("RGB", (900, 80 + 70 * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((30, 40 + 70 * i), line, font=font, fill="black")
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def photo(name: str, fmt: str = "PNG") -> bytes:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(getattr(data, name)()).convert("RGB").save(buf, fmt)
    return buf.getvalue()


def solid(colour: tuple[int, int, int], size=(32, 24), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, fmt)
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG of a few hundred bytes whose header claims ``width`` x ``height`` pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 65536, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def make_colour_classifier(path: Path, layout: str = "NCHW") -> Path:
    """Mean colour of an 8x8 image → logits of red, green, blue, gray (scale 1/255 inputs):
    a solid red image's top class is ``red``. NHWC takes [N, 8, 8, 3]."""
    shape = [None, 3, 8, 8] if layout == "NCHW" else [None, 8, 8, 3]
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 4])
    weights = np.array([[4, 0, 0, 1], [0, 4, 0, 1], [0, 0, 4, 1]], dtype=np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["pixels"], ["mean"], axes=axes, keepdims=0),
        helper.make_node("MatMul", ["mean", "w"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes, "colours", [x], [y], initializer=[numpy_helper.from_array(weights, "w")]
    )
    return _save(graph, path)


def reference_probabilities(onnx_path: Path, images: list[bytes]) -> np.ndarray:
    """EfficientNet-Lite0 in process, written out plainly: PIL decode, the centre 87.5 %
    resized to 224x224 (bilinear), ``(x - 127) / 128``, NCHW, onnxruntime, softmax."""
    import onnxruntime as ort

    rows = []
    for data in images:
        image = Image.open(io.BytesIO(data)).convert("RGB")
        w, h = image.size
        side = min(w, h) * 0.875
        box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
        resized = image.resize((224, 224), Image.Resampling.BILINEAR, box=box)
        rows.append((np.asarray(resized, np.float32) - 127) / 128)
    pixels = np.stack(rows).transpose(0, 3, 1, 2)
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"pixels": np.ascontiguousarray(pixels)})
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)
