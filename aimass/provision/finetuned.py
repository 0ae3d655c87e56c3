"""Registering what a fine-tuning job made: a new model served from its base's files and the
job's adapter, through the one registration path (``registration.register``).

The new version is registered, not loaded and not promoted: the base keeps serving until an
operator (or a job's auto-promotion) decides otherwise. Its spec is the base's serving spec
with ``options.lora`` naming the adapter, so the adapter is kept, digested and checked at every
load like the base's GGUF (hard-linked, not copied, when large).
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from aimass.config import Settings
from aimass.errors import InvalidInput
from aimass.provision.registration import Registered, register
from aimass.registry import models as registry
from aimass.spec import ModelSpec

SUFFIX_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,40}$")


def fine_tuned_name(base: str, suffix: str, job_id: str) -> str:
    """``ft:<base>:<suffix>:<id>``, the name OpenAI gives a fine-tuned model."""
    if not SUFFIX_PATTERN.match(suffix):
        raise InvalidInput(
            "suffix must be 1 to 40 letters, digits, '.', '_' or '-'", param="suffix"
        )
    return f"ft:{base}:{suffix}:{job_id}"


async def register_lora_version(
    settings: Settings,
    base_name: str,
    adapter_path: Path,
    name: str,
    *,
    base_version: int | None = None,
    lora_scale: float = 1.0,
    description: str = "",
) -> Registered:
    """Register ``name`` version 1: ``base_name`` (its newest version unless ``base_version``)
    with the LoRA adapter at ``adapter_path``; refused (400) unless the base is a llama.cpp
    model, and checked by a trial load like any registration."""
    url = settings.resolved_database_url
    base = (await asyncio.to_thread(registry.get_model, url, base_name, base_version)).spec
    if base.runtime != "llamacpp":
        raise InvalidInput(
            f"model {base_name!r} is served by runtime {base.runtime!r}; a LoRA adapter needs "
            "a llama.cpp (GGUF) base",
            param="model",
        )
    options = {**base.options, "lora": str(adapter_path.resolve()), "lora_scale": lora_scale}
    spec = base.model_copy(
        update={
            "name": name,
            "version": 1,
            "options": options,
            "sha256": {},
            "description": description or f"LoRA fine-tune of {base.name} version {base.version}",
        }
    )
    return await register(settings, ModelSpec.parse(spec.model_dump()))
