"""A reusable ``llama_batch`` backed by numpy arrays, filled without per-token ctypes calls.

``llama_batch_init`` allocates arrays that Python can only fill element by element through
ctypes; here the struct points into numpy arrays we own, so a step writes whole slices.
Each token belongs to exactly one sequence (``n_seq_id`` is always 1).
"""

from __future__ import annotations

import ctypes

import llama_cpp as lc
import numpy as np


class TokenBatch:
    """Up to ``capacity`` tokens of any sequences for one ``llama_decode`` call."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.token = np.zeros(capacity, dtype=np.int32)
        self.pos = np.zeros(capacity, dtype=np.int32)
        self.n_seq_id = np.ones(capacity, dtype=np.int32)
        self.seq = np.zeros(capacity, dtype=np.int32)
        self.logits = np.zeros(capacity, dtype=np.int8)
        int_p = ctypes.POINTER(ctypes.c_int32)
        base = self.seq.ctypes.data
        self._seq_ptrs = (int_p * capacity)(
            *[ctypes.cast(base + 4 * i, int_p) for i in range(capacity)]
        )
        self.struct = lc.llama_batch()
        self.struct.token = self.token.ctypes.data_as(ctypes.POINTER(lc.llama_token))
        self.struct.embd = ctypes.cast(None, ctypes.POINTER(ctypes.c_float))
        self.struct.pos = self.pos.ctypes.data_as(ctypes.POINTER(lc.llama_pos))
        self.struct.n_seq_id = self.n_seq_id.ctypes.data_as(int_p)
        self.struct.seq_id = ctypes.cast(self._seq_ptrs, ctypes.POINTER(int_p))
        self.struct.logits = self.logits.ctypes.data_as(ctypes.POINTER(ctypes.c_int8))
        self.n = 0

    @property
    def room(self) -> int:
        return self.capacity - self.n

    def clear(self) -> None:
        self.n = 0

    def add(self, tokens: list[int], start_pos: int, seq_id: int, logits_last: bool) -> int:
        """Append tokens of one sequence; returns the batch index of the last one."""
        k = len(tokens)
        end = self.n + k
        self.token[self.n : end] = tokens
        self.pos[self.n : end] = np.arange(start_pos, start_pos + k, dtype=np.int32)
        self.seq[self.n : end] = seq_id
        self.logits[self.n : end] = 0
        if logits_last:
            self.logits[end - 1] = 1
        self.n = end
        return end - 1

    def decode(self, ctx: lc.llama_context_p) -> int:
        """Run ``llama_decode`` over the filled tokens; returns its status code."""
        self.struct.n_tokens = self.n
        return lc.llama_decode(ctx, self.struct)
