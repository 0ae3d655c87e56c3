"""The vision runtime's preprocessing and options, in process (no server)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from aimass.errors import InvalidInput, PayloadTooLarge
from aimass.runtimes.base import ROW_ERRORS
from aimass.runtimes.vision.options import VisionOptions, read_options
from aimass.runtimes.vision.preprocess import Preprocessor
from aimass.runtimes.vision.runtime import VisionRuntime
from aimass.spec import ModelSpec
from tests.factories_vision import COLOURS, make_colour_classifier, png_bomb, solid


def half_red(size=(40, 20)) -> Image.Image:
    """Left half red, right half blue."""
    image = Image.new("RGB", size, (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, size[0] // 2, size[1]))
    return image


def test_normalization_layout_and_channel_order() -> None:
    options = VisionOptions(size=4, mean=[10, 20, 30], std=2, channel_order="BGR")
    pre = Preprocessor(options, np.float32)
    row = pre.pixels(Image.new("RGB", (9, 9), (110, 120, 130)))
    assert row.shape == (4, 4, 3)
    # BGR first (130, 120, 110), then mean and std in the model's channel order
    assert row[0, 0].tolist() == [60.0, 50.0, 40.0]
    batch = pre.stack([row, row])
    assert batch.shape == (2, 3, 4, 4)


def test_scale_then_mean_and_std() -> None:
    options = VisionOptions(size=2, scale=1 / 255, mean=0.5, std=0.5)
    row = Preprocessor(options, np.float32).pixels(Image.new("RGB", (3, 3), (255, 0, 255)))
    assert np.allclose(row[0, 0], [1, -1, 1])


def test_uint8_input_takes_the_pixels_as_they_are() -> None:
    row = Preprocessor(VisionOptions(size=2), np.uint8).pixels(Image.new("RGB", (5, 5), (7, 8, 9)))
    assert row.dtype == np.uint8 and row[1, 1].tolist() == [7, 8, 9]


def test_resize_modes() -> None:
    image = half_red()
    stretch = Preprocessor(VisionOptions(size=10), np.uint8).resize(image)
    crop = Preprocessor(VisionOptions(size=10, resize="crop", crop_fraction=0.5), np.uint8)
    pad = Preprocessor(VisionOptions(size=10, resize="pad"), np.uint8).resize(image)
    assert stretch.size == (10, 10)
    cropped = np.asarray(crop.resize(image))
    assert cropped[5, 1].tolist() == [255, 0, 0] and cropped[5, 8].tolist() == [0, 0, 255]
    padded = np.asarray(pad)
    assert padded[0, 5].tolist() == [0, 0, 0] and padded[5, 1].tolist() == [255, 0, 0]


@pytest.mark.parametrize(
    ("options", "field"),
    [({"layout": "CHW"}, "options.layout"), ({"size": 0}, "options.size"),
     ({"std": [1, 0, 1]}, "options.std"), ({"colour": "RGB"}, "options.colour")],
)  # fmt: skip
def test_bad_options_name_the_field(options, field, tmp_path) -> None:
    spec = ModelSpec(name="m", runtime="vision", task="classification",
                     source=str(tmp_path / "m.onnx"), options=options)  # fmt: skip
    with pytest.raises(InvalidInput, match=field):
        read_options(spec)


def load(tmp_path, **options) -> VisionRuntime:
    path = make_colour_classifier(tmp_path / "colours.onnx")
    spec = ModelSpec(name="colours", runtime="vision", task="classification", source=str(path),
                     options={"size": 8, "scale": 1 / 255, "labels": COLOURS, **options},
                     limits={"max_image_pixels": 10_000})  # fmt: skip
    runtime = VisionRuntime(spec)
    runtime.load()
    return runtime


def test_rows_fail_alone_with_their_own_status(tmp_path) -> None:
    runtime = load(tmp_path)
    rows = np.empty(3, dtype=object)
    rows[:] = [solid((255, 0, 0)), b"nope", png_bomb(1000, 1000)]
    out = runtime.infer({"image": rows})
    assert out["probabilities"].shape == (3, 4)
    assert out["probabilities"][0].argmax() == 0
    errors = out[ROW_ERRORS]
    assert errors[0] is None
    assert isinstance(errors[1], InvalidInput) and isinstance(errors[2], PayloadTooLarge)
    assert runtime.describe()["labels"] == COLOURS


def test_load_checks_size_labels_and_output(tmp_path) -> None:
    with pytest.raises(InvalidInput, match=r"options\.size"):
        load(tmp_path, size=16)
    with pytest.raises(InvalidInput, match=r"options\.labels has 2 names"):
        load(tmp_path, labels=["a", "b"])
    with pytest.raises(InvalidInput, match=r"options\.output"):
        load(tmp_path, output="nothing")


def test_a_jpeg_is_decoded_and_classified(tmp_path) -> None:
    buf = io.BytesIO()
    half_red((64, 64)).save(buf, "JPEG")
    rows = np.empty(1, dtype=object)
    rows[0] = buf.getvalue()
    assert load(tmp_path).infer({"image": rows})["probabilities"].shape == (1, 4)
