"""Images from client bytes: size limits checked before decoding, every failure a client error.

``decode_image(data, limits)`` is the one way an image a client sent becomes pixels:

1. more than ``limits.max_bytes`` bytes → ``PayloadTooLarge`` naming ``max_image_bytes``;
2. the header is read (PIL reads the size lazily, without decoding pixels); width × height over
   ``limits.max_pixels`` → ``PayloadTooLarge`` naming ``max_image_pixels``, so a decompression
   bomb (a small file that decodes to gigabytes) is refused before any pixel is decoded;
3. only then the pixels are decoded and converted to RGB (the first frame of an animation).

Not an image, an unsupported format, a corrupt or truncated file → ``InvalidInput`` naming the
problem. PIL's plugins raise a zoo of exception types on bad data (``SyntaxError``,
``struct.error``, ``ValueError``, ``OSError``, ``EOFError``, ...), so decoding catches them all and
reports the file as undecodable; the hypothesis fuzz in ``tests/unit/test_media_image.py`` holds
the module to "only InvalidInput or PayloadTooLarge come out".

PIL's own process-wide guard (``Image.MAX_IMAGE_PIXELS``: a warning above 89 M pixels, an error
above twice that) is switched off on import: the per-model ``max_image_pixels`` replaces it and
is checked from the header on every decode, so one limit applies, the one a model's spec names.

``image_from_data_url(text)`` turns the JSON form of an image (a ``data:image/...;base64,`` URL
or bare base64) into bytes; remote URLs are refused (nothing is fetched).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from aimass.errors import InvalidInput, PayloadTooLarge

Image.MAX_IMAGE_PIXELS = None

FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
"""Formats accepted from clients: the common photo and screenshot formats. Exotic plugins
(EPS runs Ghostscript, others are rarely tested) are never tried."""

DEFAULT_MAX_BYTES = 20 * 1024 * 1024
DEFAULT_MAX_PIXELS = 40_000_000
"""Defaults of the spec's ``limits.max_image_bytes`` and ``limits.max_image_pixels``: a 20 MiB
file and 40 M pixels (a 8000×5000 photo, 120 MB as RGB) are above what a phone camera makes."""

_DATA_URL = re.compile(r"^data:([\w.+/-]*)((?:;[\w.+-]+=[\w.+-]+)*)(;base64)?,", re.ASCII)
_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True)
class ImageLimits:
    """What one image may weigh: encoded bytes and decoded pixels (width × height)."""

    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS


def decode_image(data: bytes, limits: ImageLimits, *, param: str = "image") -> Image.Image:
    """Decode ``data`` (an encoded image file) to an RGB ``PIL.Image``, limits first.

    Raises ``PayloadTooLarge`` (413) naming ``max_image_bytes`` or ``max_image_pixels``, or
    ``InvalidInput`` (400, ``param``) naming what is wrong with the file; nothing else.
    """
    if len(data) > limits.max_bytes:
        raise PayloadTooLarge(
            f"{param}: the image is {len(data)} bytes, over the model's limit "
            f"max_image_bytes={limits.max_bytes}",
            param=param,
        )
    image = _open(data, param)
    width, height = image.size
    if width <= 0 or height <= 0:
        raise InvalidInput(f"{param}: the image has no pixels ({width}x{height})", param=param)
    if width * height > limits.max_pixels:
        raise PayloadTooLarge(
            f"{param}: the image is {width}x{height} = {width * height} pixels, over the "
            f"model's limit max_image_pixels={limits.max_pixels} (refused before decoding)",
            param=param,
        )
    try:
        image.load()
        return image if image.mode == "RGB" else image.convert("RGB")
    except Exception as exc:
        raise InvalidInput(
            f"{param}: the {image.format} image cannot be decoded ({_reason(exc)}); "
            "is the file truncated or corrupt?",
            param=param,
        ) from exc


def _open(data: bytes, param: str) -> Image.Image:
    """Read the header only: format and size, no pixels."""
    if not data:
        raise InvalidInput(f"{param}: the image is empty (0 bytes)", param=param)
    try:
        return Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError as exc:
        raise InvalidInput(
            f"{param}: not an image in a supported format ({', '.join(FORMATS)})", param=param
        ) from exc
    except Exception as exc:
        raise InvalidInput(
            f"{param}: the image header cannot be read ({_reason(exc)})", param=param
        ) from exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}"[:200] if text else type(exc).__name__


def image_from_data_url(
    text: str, *, limits: ImageLimits | None = None, param: str = "image"
) -> bytes:
    """The bytes of an image sent as text: ``data:image/png;base64,...`` or bare base64.

    Whitespace (line-wrapped base64) is ignored; URL-safe base64 is accepted. A remote URL, a
    data URL that is not base64, or bad base64 → ``InvalidInput`` naming ``param``; with
    ``limits``, text that would decode to more than ``max_bytes`` → ``PayloadTooLarge`` before
    it is decoded.
    """
    if text.startswith(("http://", "https://")):
        raise InvalidInput(
            f"{param}: remote image URLs are not fetched; send the image as a data URL "
            "(data:image/png;base64,...) or as base64",
            param=param,
        )
    payload = text
    match = _DATA_URL.match(text)
    if match:
        if not match.group(3):
            raise InvalidInput(f"{param}: a data URL must be base64 (';base64,')", param=param)
        payload = text[match.end() :]
    elif text.startswith("data:"):
        raise InvalidInput(
            f"{param}: malformed data URL; expected data:<type>;base64,<data>", param=param
        )
    payload = _WHITESPACE.sub("", payload)
    if limits is not None and len(payload) // 4 * 3 > limits.max_bytes:
        raise PayloadTooLarge(
            f"{param}: the image is over {limits.max_bytes} bytes, the model's limit "
            f"max_image_bytes={limits.max_bytes}",
            param=param,
        )
    if "-" in payload or "_" in payload:
        payload = payload.replace("-", "+").replace("_", "/")
    try:
        data = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidInput(f"{param}: not valid base64 ({exc})", param=param) from exc
    if not data:
        raise InvalidInput(f"{param}: the image is empty", param=param)
    return data
