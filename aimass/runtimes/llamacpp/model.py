"""A loaded GGUF model and its multi-sequence context, through llama.cpp's C API.

Owns the native handles (model, LoRA adapter, context, KV memory) and the text <-> token
conversions, so
the scheduler in ``runtime.py`` deals with sequences only. Each sequence gets its own KV
stream (``kv_unified = False``) of ``n_ctx_per_seq`` cells: a sequence's attention never sees
another's cells, so batching cannot change what a sequence computes.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

import llama_cpp as lc
import numpy as np

from aimass.errors import InvalidInput, ModelFailed

_BACKEND_READY = False


@dataclass(frozen=True)
class ContextConfig:
    """Sizes of the llama.cpp context, from the spec."""

    n_seq: int
    n_ctx_per_seq: int
    n_batch: int
    threads: int


@dataclass(frozen=True)
class Lora:
    """A LoRA adapter GGUF applied on the base model (``options.lora``, ``options.lora_scale``)."""

    path: str
    scale: float = 1.0


@lc.llama_log_callback
def _quiet_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
    """llama.cpp logs every tensor it loads; errors still surface as return codes."""


def _init_backend() -> None:
    global _BACKEND_READY
    if not _BACKEND_READY:
        lc.llama_log_set(_quiet_log, ctypes.c_void_p(0))
        lc.llama_backend_init()
        _BACKEND_READY = True


class LlamaModel:
    """Native model + context; free with ``close``."""

    def __init__(self, path: str, config: ContextConfig, lora: Lora | None = None):
        if not Path(path).is_file():
            raise InvalidInput(f"GGUF file not found: {path} (spec.source)", param="source")
        _init_backend()
        mparams = lc.llama_model_default_params()
        mparams.n_gpu_layers = 0
        self.model = lc.llama_model_load_from_file(path.encode(), mparams)
        if not self.model:
            raise ModelFailed(f"llama.cpp could not load {path}: not a valid GGUF model")
        self.vocab = lc.llama_model_get_vocab(self.model)
        self.n_vocab = lc.llama_vocab_n_tokens(self.vocab)
        adapter = self._load_lora(lora) if lora is not None else None
        self.ctx = self._new_context(config)
        if adapter is not None and lora is not None:
            self._apply_lora(adapter, lora.scale)
        self.memory = lc.llama_get_memory(self.ctx)
        self.n_ctx_per_seq = lc.llama_n_ctx_seq(self.ctx)
        self.n_seq = config.n_seq
        self.n_batch = lc.llama_n_batch(self.ctx)
        self._pieces: dict[int, bytes] = {}

    def _load_lora(self, lora: Lora) -> lc.llama_adapter_lora_p:
        """Load the adapter before the context is made, as llama.cpp asks (it is freed with
        the model); a file that is not an adapter for this model is refused naming it."""
        if not Path(lora.path).is_file():
            lc.llama_model_free(self.model)
            raise InvalidInput(f"LoRA adapter not found: {lora.path}", param="options.lora")
        adapter = lc.llama_adapter_lora_init(self.model, lora.path.encode())
        if not adapter:
            lc.llama_model_free(self.model)
            raise InvalidInput(
                f"llama.cpp could not load {lora.path} as a LoRA adapter of this model (a "
                "LoRA GGUF of the same architecture and tensor shapes)",
                param="options.lora",
            )
        return adapter

    def _apply_lora(self, adapter: lc.llama_adapter_lora_p, scale: float) -> None:
        adapters = (lc.llama_adapter_lora_p_ctypes * 1)(adapter)
        scales = (ctypes.c_float * 1)(scale)
        if lc.llama_set_adapters_lora(self.ctx, adapters, 1, scales) != 0:
            self.close()
            raise ModelFailed("llama.cpp could not apply the LoRA adapter (options.lora)")

    def _new_context(self, config: ContextConfig) -> lc.llama_context_p:
        params = lc.llama_context_default_params()
        params.n_ctx = config.n_ctx_per_seq * config.n_seq
        params.n_batch = config.n_batch
        params.n_ubatch = config.n_batch
        params.n_seq_max = config.n_seq
        params.n_threads = config.threads
        params.n_threads_batch = config.threads
        params.kv_unified = False
        params.flash_attn_type = lc.LLAMA_FLASH_ATTN_TYPE_DISABLED
        params.no_perf = True
        ctx = lc.llama_init_from_model(self.model, params)
        if not ctx:
            lc.llama_model_free(self.model)
            raise ModelFailed(
                f"llama.cpp could not create a context of {params.n_ctx} tokens for "
                f"{config.n_seq} sequences (options.n_ctx_per_seq, limits.max_concurrent)"
            )
        return ctx

    def close(self) -> None:
        if self.ctx:
            lc.llama_free(self.ctx)
            self.ctx = None
        if self.model:
            lc.llama_model_free(self.model)
            self.model = None

    # metadata

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(1 << 16)
        n = lc.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        if n < 0:
            return None
        if n >= len(buf):
            buf = ctypes.create_string_buffer(n + 1)
            lc.llama_model_meta_val_str(self.model, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace")

    @property
    def n_ctx_train(self) -> int:
        return lc.llama_model_n_ctx_train(self.model)

    @property
    def bos(self) -> int:
        return lc.llama_vocab_bos(self.vocab)

    @property
    def eos(self) -> int:
        return lc.llama_vocab_eos(self.vocab)

    def is_eog(self, token: int) -> bool:
        return lc.llama_vocab_is_eog(self.vocab, token)

    # text <-> tokens

    def tokenize(self, text: str, *, add_special: bool) -> list[int]:
        """Tokens of ``text`` with special tokens parsed (``<start_of_turn>`` etc.)."""
        data = text.encode("utf-8")
        size = len(data) + 8
        buf = (lc.llama_token * size)()
        n = lc.llama_tokenize(self.vocab, data, len(data), buf, size, add_special, True)
        if n < 0:
            size = -n
            buf = (lc.llama_token * size)()
            n = lc.llama_tokenize(self.vocab, data, len(data), buf, size, add_special, True)
        return list(buf[:n])

    def piece(self, token: int, special: bool = False) -> bytes:
        """The bytes of one token (cached: the same few thousand tokens recur)."""
        key = token if not special else -token - 1
        cached = self._pieces.get(key)
        if cached is None:
            buf = ctypes.create_string_buffer(64)
            n = lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = lc.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
            cached = buf.raw[:n]
            self._pieces[key] = cached
        return cached

    # KV cache

    def free_seq(self, slot: int) -> None:
        """Drop every KV cell of a sequence slot so the next sequence starts clean."""
        lc.llama_memory_seq_rm(self.memory, slot, -1, -1)

    def drop_from(self, slot: int, pos: int) -> None:
        """Drop a slot's cells from position ``pos`` on (undo a throw-away row, or cut a
        cached prefix to the part a new sequence shares)."""
        lc.llama_memory_seq_rm(self.memory, slot, pos, -1)

    def copy_seq(self, src: int, dst: int) -> None:
        """Make slot ``dst`` hold a copy of slot ``src``'s cells (its whole KV stream: llama.cpp
        copies streams whole, at the start of the next ``llama_decode``)."""
        lc.llama_memory_seq_cp(self.memory, src, dst, -1, -1)

    def logits(self, index: int) -> np.ndarray:
        """The raw logits of batch row ``index`` of the last decode (a view: copy to keep)."""
        ptr = lc.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))
