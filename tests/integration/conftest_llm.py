"""The built-in Gemma 3 270M GGUF for LLM tests, assembled once into pytest's cache dir.

Imported by the LLM test modules (not a pytest conftest: it only provides helpers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aimass.registry.builtin import gemma_spec
from aimass.spec import ModelSpec


def gemma_file(config: pytest.Config) -> Path:
    """Path of the GGUF (253 MB), written on the first run and reused afterwards."""
    home = Path(config.cache.mkdir("aimass-gemma"))
    return Path(gemma_spec(home).source)


def llm_spec(source: Path, **overrides: Any) -> ModelSpec:
    """A small serving spec for tests: 4 slots of 512 tokens, 2 threads."""
    data: dict[str, Any] = {
        "name": "gemma",
        "task": "text-generation",
        "runtime": "llamacpp",
        "source": str(source),
        "threads": 2,
        "limits": {"max_concurrent": 4, "max_queue": 8, "timeout_s": 120},
        "options": {"n_ctx_per_seq": 512},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return ModelSpec.model_validate(data)
