"""The image decoder: limits before decoding, and only client errors out of any bytes."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from aimass.errors import InvalidInput, PayloadTooLarge
from aimass.media.image import ImageLimits, decode_image, image_from_data_url

LIMITS = ImageLimits(max_bytes=1 << 20, max_pixels=4_000_000)


def encode(fmt: str, size=(64, 48), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 120).save(buf, fmt)
    return buf.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` pixels, with one tiny compressed chunk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


SAMPLES = [encode("PNG"), encode("JPEG"), encode("WEBP"), encode("GIF", mode="P")]


def decodes_or_refuses(data: bytes) -> None:
    try:
        image = decode_image(data, LIMITS)
    except (InvalidInput, PayloadTooLarge):
        return
    assert image.mode == "RGB"
    assert image.size[0] * image.size[1] <= LIMITS.max_pixels


@pytest.mark.parametrize("data", SAMPLES, ids=["png", "jpeg", "webp", "gif"])
def test_decodes_common_formats_to_rgb(data: bytes) -> None:
    image = decode_image(data, LIMITS)
    assert (image.mode, image.size) == ("RGB", (64, 48))


def test_over_max_bytes_names_the_setting() -> None:
    with pytest.raises(PayloadTooLarge, match="max_image_bytes=100"):
        decode_image(SAMPLES[0], ImageLimits(max_bytes=100, max_pixels=10**6))


def test_decompression_bomb_is_refused_from_the_header() -> None:
    bomb = png_header(100_000, 100_000)
    assert len(bomb) < 200
    with pytest.raises(PayloadTooLarge, match=r"max_image_pixels=4000000.*before decoding"):
        decode_image(bomb, LIMITS)


def test_not_an_image_and_truncated_name_the_problem() -> None:
    with pytest.raises(InvalidInput, match="not an image"):
        decode_image(b"hello, world", LIMITS)
    with pytest.raises(InvalidInput, match="empty"):
        decode_image(b"", LIMITS)
    jpeg = encode("JPEG", size=(256, 256))
    with pytest.raises(InvalidInput, match="truncated or corrupt"):
        decode_image(jpeg[: len(jpeg) // 2], LIMITS)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_fuzz_random_bytes(data: bytes) -> None:
    decodes_or_refuses(data)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(SAMPLES), st.data())
def test_fuzz_truncated_and_flipped_files(sample: bytes, data) -> None:
    cut = data.draw(st.integers(0, len(sample)))
    blob = bytearray(sample[:cut])
    for _ in range(data.draw(st.integers(0, 4))):
        if blob:
            blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    decodes_or_refuses(bytes(blob))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(0, 2**31 - 1))
def test_fuzz_header_dimensions(width: int, height: int) -> None:
    decodes_or_refuses(png_header(width, height))


def test_data_url_and_plain_base64() -> None:
    raw = SAMPLES[0]
    b64 = base64.b64encode(raw).decode()
    assert image_from_data_url(f"data:image/png;base64,{b64}") == raw
    assert image_from_data_url(b64) == raw
    wrapped = "\n".join(b64[i : i + 76] for i in range(0, len(b64), 76))
    assert image_from_data_url(wrapped) == raw
    assert image_from_data_url(base64.urlsafe_b64encode(raw).decode().rstrip("=")) == raw


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("https://example.com/cat.png", "remote image URLs"),
        ("data:image/png,abc", "must be base64"),
        ("data:nonsense", "malformed data URL"),
        ("not base64 at all!", "not valid base64"),
        ("", "empty"),
    ],
)
def test_bad_text_images_are_400(text: str, match: str) -> None:
    with pytest.raises(InvalidInput, match=match):
        image_from_data_url(text)


def test_base64_over_max_bytes_is_refused_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge, match="max_image_bytes=10"):
        image_from_data_url("A" * 100, limits=ImageLimits(max_bytes=10, max_pixels=10))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_fuzz_data_url(text: str) -> None:
    try:
        image_from_data_url(text)
    except InvalidInput:
        pass
