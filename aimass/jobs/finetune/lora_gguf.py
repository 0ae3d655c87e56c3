"""A peft LoRA adapter written as a llama.cpp LoRA GGUF, served on the base GGUF as it is.

The layout is llama.cpp's own (``convert_lora_to_gguf.py``, ``src/llama-adapter.cpp``):
``general.type = adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``, the base's
``general.architecture``, and for each adapted weight ``blk.N.<name>.weight.lora_a`` (peft's
``lora_A``, torch shape ``[r, n_in]``) and ``...lora_b`` (``lora_B``, ``[n_out, r]``). llama.cpp
checks both against the base tensor's shape and applies ``scale * alpha / r * B·A``, the same
update peft trains.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

PROJECTIONS = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output"}
"""Hugging Face attention projection -> llama.cpp tensor name (the modules LoRA adapts)."""
_KEY = re.compile(r"layers\.(\d+)\.self_attn\.(\w+)\.lora_([AB])\.weight$")


def gguf_name(peft_key: str) -> str:
    """llama.cpp's name for one tensor of a peft state dict (``ValueError`` if not adapted)."""
    match = _KEY.search(peft_key)
    if match is None or match.group(2) not in PROJECTIONS:
        raise ValueError(f"no llama.cpp name for LoRA tensor {peft_key!r}")
    layer, proj, half = match.groups()
    return f"blk.{layer}.{PROJECTIONS[proj]}.weight.lora_{half.lower()}"


def architecture(base_gguf: str) -> str:
    """The base GGUF's ``general.architecture`` (``gemma3``), which an adapter must repeat:
    llama.cpp refuses an adapter of another architecture (transformers' own name for the
    model, ``gemma3_text``, is not it)."""
    import gguf

    field = gguf.GGUFReader(base_gguf).fields["general.architecture"]
    return bytes(field.parts[field.data[0]]).decode()


def write_adapter(state: dict[str, Any], alpha: float, architecture: str, path: Path) -> None:
    """Write peft's LoRA ``state`` (tensors by peft key) as a llama.cpp adapter at ``path``."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    writer.add_float32("adapter.lora.alpha", float(alpha))
    for key in sorted(state):
        array = state[key].detach().to("cpu").float().numpy()
        writer.add_tensor(gguf_name(key), np.ascontiguousarray(array, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
