"""Turning request rows into token ids, inside the replica, with per-row errors.

One ``TextTokenizer`` per loaded model, built on the Rust ``tokenizers`` library (fast, and it
releases the GIL). Rows are texts, lists of token ids (the content tokens; special tokens are
added here as the model expects), or (query, document) pairs for cross-encoders.

An over-long row is either an error for that row alone (naming the limit) or cut to the
limit when the request asked for truncation. Pairs are always cut, longest side first.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer

from aimass.errors import InvalidInput

_PAD_TOKENS = ("[PAD]", "<pad>", "<|padding|>", "<|endoftext|>")


@dataclass
class TokenizedRows:
    """Token ids per row (special tokens included), with ``None`` or a message per row."""

    ids: list[list[int]]
    type_ids: list[list[int]]
    errors: list[str | None]

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(r) for r in self.ids), dtype=np.int64, count=len(self.ids))


class TextTokenizer:
    """The model's tokenizer with the limit ``max_length`` applied."""

    def __init__(self, model_dir: Path, max_length: int):
        self.max_length = max_length
        self._full = _load_tokenizer(model_dir)
        self._full.no_padding()
        self._full.no_truncation()
        self._cut = Tokenizer.from_str(self._full.to_str())
        self._cut.enable_truncation(max_length, strategy="longest_first")
        self.vocab_size = self._full.get_vocab_size(with_added_tokens=True)
        self.pad_id = _pad_id(self._full, model_dir)
        self._prefix, self._suffix = _special_frame(self._full)

    def encode_texts(self, items: Sequence[object], truncate: Sequence[bool]) -> TokenizedRows:
        """Tokenize texts and token-id lists; rows that break a rule get a message instead."""
        out = TokenizedRows([[] for _ in items], [[] for _ in items], [None] * len(items))
        texts = [(i, x) for i, x in enumerate(items) if isinstance(x, str)]
        for (i, _), enc in zip(texts, self._cut.encode_batch([t for _, t in texts]), strict=True):
            self._take_text(out, i, enc, items[i], bool(truncate[i]))
        for i, item in enumerate(items):
            if not isinstance(item, str):
                self._take_ids(out, i, item, bool(truncate[i]))
        return out

    def encode_pairs(self, queries: Sequence[str], documents: Sequence[str]) -> TokenizedRows:
        """Tokenize (query, document) pairs for a cross-encoder, cut to the limit."""
        pairs = [(str(q), str(d)) for q, d in zip(queries, documents, strict=True)]
        encodings = self._cut.encode_batch(pairs)
        return TokenizedRows(
            [e.ids for e in encodings], [e.type_ids for e in encodings], [None] * len(pairs)
        )

    def count(self, text: str) -> int:
        """Tokens of ``text`` with special tokens and without any limit."""
        return len(self._full.encode(text).ids)

    def _take_text(self, out: TokenizedRows, i: int, enc: Encoding, text: str, cut: bool) -> None:
        if enc.overflowing and not cut:
            out.errors[i] = self._too_long(i, self.count(text))
            return
        out.ids[i], out.type_ids[i] = enc.ids, enc.type_ids

    def _take_ids(self, out: TokenizedRows, i: int, item: object, cut: bool) -> None:
        ids = [int(t) for t in np.asarray(item, dtype=np.int64).reshape(-1)]
        bad = [t for t in ids if t < 0 or t >= self.vocab_size]
        if bad:
            out.errors[i] = (
                f"input[{i}]: token id {bad[0]} is outside the model's vocabulary "
                f"(0..{self.vocab_size - 1})"
            )
            return
        room = self.max_length - len(self._prefix) - len(self._suffix)
        if len(ids) > room and not cut:
            out.errors[i] = self._too_long(i, len(ids) + len(self._prefix) + len(self._suffix))
            return
        row = [*self._prefix, *ids[:room], *self._suffix]
        out.ids[i], out.type_ids[i] = row, [0] * len(row)

    def _too_long(self, i: int, tokens: int) -> str:
        return (
            f"input[{i}] has {tokens} tokens, more than the model's limit of {self.max_length} "
            "(max_length); shorten it or send truncate: true"
        )


def _load_tokenizer(model_dir: Path) -> Tokenizer:
    """``tokenizer.json`` when present, else whatever transformers can build from the folder."""
    if (model_dir / "tokenizer.json").exists():
        return Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    from transformers import AutoTokenizer

    try:
        hf = AutoTokenizer.from_pretrained(str(model_dir), use_fast=True)
    except Exception as exc:
        raise InvalidInput(f"{model_dir}: cannot load a tokenizer ({exc})") from exc
    if not getattr(hf, "is_fast", False):
        raise InvalidInput(f"{model_dir}: only fast (Rust) tokenizers are supported")
    return Tokenizer.from_str(hf.backend_tokenizer.to_str())


def _pad_id(tokenizer: Tokenizer, model_dir: Path) -> int:
    """The padding token's id; any id works under the attention mask, so fall back to 0."""
    import json

    config_file = model_dir / "tokenizer_config.json"
    named = json.loads(config_file.read_text()).get("pad_token") if config_file.exists() else None
    if isinstance(named, dict):
        named = named.get("content")
    for token in (named, *_PAD_TOKENS):
        if isinstance(token, str) and tokenizer.token_to_id(token) is not None:
            return int(tokenizer.token_to_id(token))
    return 0


def _special_frame(tokenizer: Tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the model puts before and after one sequence (e.g. [CLS] … [SEP])."""
    plain = tokenizer.encode("hello", add_special_tokens=False).ids
    framed = tokenizer.encode("hello", add_special_tokens=True).ids
    for start in range(len(framed) - len(plain) + 1):
        if framed[start : start + len(plain)] == plain:
            return framed[:start], framed[start + len(plain) :]
    return [], []
