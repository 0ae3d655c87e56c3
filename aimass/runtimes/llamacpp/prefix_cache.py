"""Which KV cells a new sequence can reuse: the prefix cache over a replica's slots.

Every slot is one KV stream of the llama.cpp context. A sequence that ends (finished,
stopped, cancelled) leaves its cells in its slot as a cache entry: the tokens at positions
0..len-1. A new sequence reuses the longest prefix that any slot holds, a free slot's entry
or a running sequence's cells, as llama.cpp server's ``cache_prompt`` and vLLM's automatic
prefix caching do: multi-turn chat, a shared system prompt, few-shot prompts.

The memory bound is the KV cache itself: entries live only in free slots, so a new sequence
needing a slot evicts one. Sequences take the lowest free slot (decode steps then stay a few
compact rows: llama.cpp computes the consecutive slots ``0..max`` of a step together), and the
entry that was there moves to the free slot holding the least recently used entry (or an empty
one), so what is evicted is always the least recently used prefix. Moving or reusing an entry
across slots is a stream copy (``llama_memory_seq_cp`` of the whole stream: a few ms for the
built-in Gemma with 2,048 cells, against about a second to prefill 1,000 tokens on two cores).

Reuse is exact: a greedy answer from the cache equals the answer computed from scratch,
token for token (measured: the logits of a 700-token prompt are bitwise equal). That holds
only for cells computed as a from-scratch prefill would compute them, because llama.cpp's CPU
kernels round differently for rows computed one at a time (generated tokens), for the tail
rows of a chunk that do not fill a block of 4 (``ROW_BLOCK``), and for a final chunk of fewer
than 8 rows (``MIN_LAST_CHUNK``) (measured with ``ggml``'s repacked Q4_K kernels). So an entry
keeps only its prompt's cells, cut to those computed in full blocks (``exact_prefix``), a new
sequence reuses a multiple of 4 tokens and leaves at least 8 to compute (``reusable``), and
the answer tokens of a previous chat turn are computed again with the new prompt.

This module only keeps the books; the runtime makes the llama.cpp calls they imply.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

MIN_REUSE = 4
"""Fewer common tokens than this (a lone BOS) are not worth a stream copy."""
ROW_BLOCK = 4
"""Prompt rows are computed in blocks of this many; a chunk's remainder rows round apart."""
MIN_LAST_CHUNK = 8
"""A prompt's last chunk computed with fewer rows than this rounds differently."""


def exact_prefix(n_prompt: int, chunk: int) -> int:
    """How many leading cells of a prefilled prompt (cut in chunks of ``chunk`` tokens) a
    from-scratch prefill of a longer prompt computes bit for bit the same."""
    last_start = (n_prompt - 1) // chunk * chunk
    if n_prompt - last_start < MIN_LAST_CHUNK:
        return last_start
    return n_prompt - n_prompt % ROW_BLOCK


def reusable(common: int, n_prompt: int, chunk: int) -> int:
    """How many of ``common`` cached tokens a prompt of ``n_prompt`` tokens may reuse and
    still be computed exactly as from scratch (a chunk boundary is always safe)."""
    k = min(common, n_prompt - 1)
    k -= k % ROW_BLOCK
    if k % chunk and n_prompt - k < MIN_LAST_CHUNK:
        k = max(n_prompt - MIN_LAST_CHUNK, 0)
        k -= k % ROW_BLOCK
    return k


def common_prefix(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class Entry:
    """A free slot's cached cells: the tokens at positions 0..len-1, and when last used."""

    tokens: list[int]
    used: int


class PrefixCache:
    """Cache entries of the free slots (a slot in use holds none)."""

    def __init__(self, n_slots: int, enabled: bool, chunk: int):
        self.enabled = enabled
        self.chunk = chunk
        self.entries: list[Entry | None] = [None] * n_slots
        self._clock = itertools.count(1)

    @property
    def cached_tokens(self) -> int:
        return sum(len(e.tokens) for e in self.entries if e is not None)

    def keep(self, slot: int, tokens: list[int]) -> int:
        """A sequence left ``slot`` with the exact cells of ``tokens`` (see ``exact``); returns
        how many cells to keep (0: free them all)."""
        if not self.enabled or len(tokens) < MIN_REUSE:
            self.entries[slot] = None
            return 0
        self.entries[slot] = Entry(tokens, next(self._clock))
        return len(tokens)

    def drop(self, slot: int) -> None:
        self.entries[slot] = None

    def best(self, prompt: list[int], live: dict[int, list[int]]) -> tuple[int, int]:
        """The slot holding the longest prefix of ``prompt`` (an entry, or a running
        sequence's cells in ``live``) and how many tokens of it can be reused: at most
        what ``reusable`` allows. ``live`` holds the exact cells of running sequences.
        ``(-1, 0)`` when nothing worth reusing is cached."""
        if not self.enabled:
            return -1, 0
        holders = {s: e.tokens for s, e in enumerate(self.entries) if e is not None}
        holders.update(live)
        best_slot, best_k = -1, 0
        for slot, tokens in holders.items():
            k = reusable(common_prefix(tokens, prompt), len(prompt), self.chunk)
            if k > best_k:
                best_slot, best_k = slot, k
        if best_k < MIN_REUSE:
            return -1, 0
        entry = self.entries[best_slot] if best_slot >= 0 else None
        if entry is not None:
            entry.used = next(self._clock)
        return best_slot, best_k

    def shelter(self, slot: int, free: list[int], keep: int) -> int | None:
        """Where the entry of ``slot`` (about to be taken) should move: an empty free slot,
        else the free slot with the least recently used entry if that one is older. None when
        the entry should be dropped (nothing older to evict, or no entry). ``keep`` is a slot
        that must not be chosen (the source of a copy under way)."""
        entry = self.entries[slot]
        if entry is None:
            return None
        others = [s for s in free if s not in (slot, keep)]
        empty = [s for s in others if self.entries[s] is None]
        if empty:
            return empty[-1]
        if not others:
            return None
        victim = min(others, key=lambda s: self.entries[s].used)  # type: ignore[union-attr]
        return victim if self.entries[victim].used < entry.used else None  # type: ignore[union-attr]

    def move(self, src: int, dst: int) -> None:
        self.entries[dst] = self.entries[src]
        self.entries[src] = None
