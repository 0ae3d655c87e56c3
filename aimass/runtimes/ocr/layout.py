"""Which files of an OCR model folder are which: no engine imported, so registration can check
a folder cheaply before it trial-loads it.

A RapidOCR folder holds three ONNX files named as PaddleOCR names them (``*det*.onnx``,
``*rec*.onnx`` and optionally ``*cls*.onnx``, the text-direction classifier) and, for a
recognizer that does not carry its alphabet in its metadata (PP-OCRv4 and later do), a keys
file (``*keys*.txt`` or ``*dict*.txt``, one character a line).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from aimass.errors import InvalidInput


@dataclass(frozen=True)
class OcrFiles:
    det: Path
    rec: Path
    cls: Path | None
    keys: Path | None


def ocr_files(folder: Path) -> OcrFiles:
    """The model files in ``folder``; InvalidInput naming what is missing or ambiguous."""
    if not folder.is_dir():
        raise InvalidInput(
            f"source {folder} is not a folder; runtime 'ocr' reads a folder with *det*.onnx, "
            "*rec*.onnx and optionally *cls*.onnx and a keys file",
            param="source",
        )
    onnx = sorted(folder.glob("*.onnx"))
    texts = sorted(folder.glob("*.txt"))
    det = _one(folder, onnx, "det", required=True)
    rec = _one(folder, onnx, "rec", required=True)
    keys = _one(folder, texts, "keys", required=False) or _one(folder, texts, "dict", False)
    return OcrFiles(det, rec, _one(folder, onnx, "cls", required=False), keys)


def _one(folder: Path, files: list[Path], part: str, required: bool) -> Path | None:
    found = [f for f in files if part in f.name.lower()]
    if len(found) > 1:
        names = ", ".join(f.name for f in found)
        raise InvalidInput(f"source {folder} has several '{part}' files ({names})", param="source")
    if not found and required:
        raise InvalidInput(
            f"source {folder} has no '{part}' model (a file named *{part}*.onnx)", param="source"
        )
    return found[0] if found else None
