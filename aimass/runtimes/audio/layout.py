"""What a Whisper model folder must hold, checked without importing the engine (registration
runs it before a trial load): CTranslate2's ``model.bin`` and ``config.json``, and the
tokenizer (``tokenizer.json``), as ``ct2-transformers-converter`` writes them."""

from __future__ import annotations

from pathlib import Path

from aimass.errors import InvalidInput

REQUIRED = ("model.bin", "config.json", "tokenizer.json")


def check_whisper_folder(folder: Path) -> None:
    """InvalidInput naming what is missing when ``folder`` is not a CTranslate2 Whisper model."""
    if not folder.is_dir():
        raise InvalidInput(
            f"source {folder} is not a folder; runtime 'asr' reads a CTranslate2 Whisper "
            f"folder ({', '.join(REQUIRED)})",
            param="source",
        )
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise InvalidInput(
            f"source {folder} is not a CTranslate2 Whisper folder: {', '.join(missing)} "
            "missing (convert a model with ct2-transformers-converter)",
            param="source",
        )
