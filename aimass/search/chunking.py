"""Text cut into overlapping chunks measured in the tokens of the embedding model's tokenizer.

OpenAI's file search chunks by tokens: ``auto`` is 800-token chunks overlapping by 400, and a
``static`` strategy may set ``max_chunk_size_tokens`` (100..4096) and ``chunk_overlap_tokens``
(0..half the chunk size). ``chunk_text`` does the same with the tokenizer of the store's own
embedding model, so a chunk's size is what that model will see (plus its special tokens, which
are not counted: an encoder that takes 512 tokens fits 510-token chunks).

Invariants (``tests/unit/test_chunking.py`` checks them with hypothesis):

- every chunk has at most ``max_tokens`` tokens, and its text is ``text[start_char:end_char]``;
- chunks come in order, and together they cover every token of the text;
- two neighbours share at most ``overlap`` tokens; a chunk ends before a word's continuation
  token (a ``##piece``) when it can do so and keep at least half its size, and starts on a
  word's first token, so no chunk begins or ends mid-word when words fit.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

from tokenizers import Encoding, Tokenizer

from aimass.errors import InvalidInput

AUTO_MAX_TOKENS = 800
AUTO_OVERLAP_TOKENS = 400
MIN_CHUNK_TOKENS = 100
MAX_CHUNK_TOKENS = 4096


@dataclass(frozen=True)
class Chunk:
    """One chunk: its text, where it lies in the source text, and its size in tokens."""

    text: str
    start_char: int
    end_char: int
    n_tokens: int


def check_static(max_tokens: int, overlap: int, param: str = "chunking_strategy.static") -> None:
    """Raise ``InvalidInput`` naming the field unless the sizes are within OpenAI's bounds."""
    if not MIN_CHUNK_TOKENS <= max_tokens <= MAX_CHUNK_TOKENS:
        raise InvalidInput(
            f"max_chunk_size_tokens must be between {MIN_CHUNK_TOKENS} and {MAX_CHUNK_TOKENS}, "
            f"not {max_tokens}",
            param=f"{param}.max_chunk_size_tokens",
        )
    if not 0 <= overlap <= max_tokens // 2:
        raise InvalidInput(
            f"chunk_overlap_tokens must be between 0 and half of max_chunk_size_tokens "
            f"({max_tokens // 2}), not {overlap}",
            param=f"{param}.chunk_overlap_tokens",
        )


def chunk_text(
    text: str,
    tokenizer: Tokenizer,
    max_tokens: int = AUTO_MAX_TOKENS,
    overlap: int = AUTO_OVERLAP_TOKENS,
) -> list[Chunk]:
    """Cut ``text`` into chunks of at most ``max_tokens`` tokens, neighbours sharing at most
    ``overlap`` tokens (``0 <= overlap <= max_tokens // 2``; ``max_tokens >= 1``).

    ``tokenizer`` is a Hugging Face ``tokenizers.Tokenizer`` (a model's ``tokenizer.json``); it
    is not changed (one that truncates or pads is copied without either). Text without tokens
    (empty, blank) gives no chunks.
    """
    if max_tokens < 1 or not 0 <= overlap <= max_tokens // 2:
        raise ValueError(
            f"need max_tokens >= 1 and 0 <= overlap <= max_tokens // 2, got {max_tokens}, {overlap}"
        )
    enc = _plain(tokenizer).encode(text, add_special_tokens=False)
    offsets, words = enc.offsets, _word_ids(enc)
    chunks, start, end, n = [], 0, 0, len(offsets)
    while start < n:
        end = _snap_end(words, start, min(start + max_tokens, n), max_tokens, after=end)
        chunks.append(
            Chunk(
                text[offsets[start][0] : offsets[end - 1][1]],
                offsets[start][0],
                offsets[end - 1][1],
                end - start,
            )
        )
        if end == n:
            break
        start = _snap_start(words, max(end - overlap, start + 1), end)
    return chunks


_plain_copies: weakref.WeakKeyDictionary[Tokenizer, Tokenizer] = weakref.WeakKeyDictionary()
_plain_lock = threading.Lock()


def _plain(tokenizer: Tokenizer) -> Tokenizer:
    """``tokenizer``, or a copy of it that neither truncates nor pads (a model's
    ``tokenizer.json`` often does both, for its fixed input length). The copy is made once per
    tokenizer: it costs about 100 ms for MiniLM's, as much as embedding a small file."""
    if tokenizer.truncation is None and tokenizer.padding is None:
        return tokenizer
    with _plain_lock:
        copy = _plain_copies.get(tokenizer)
        if copy is None:
            copy = Tokenizer.from_str(tokenizer.to_str())
            copy.no_truncation()
            copy.no_padding()
            _plain_copies[tokenizer] = copy
        return copy


def _word_ids(enc: Encoding) -> list[int | None]:
    return list(enc.word_ids)


def _snap_end(words: list[int | None], start: int, end: int, max_tokens: int, after: int) -> int:
    """Move ``end`` back to the first token of a word cut in two, if half the chunk remains
    and the chunk still reaches past the previous one's end (``after``): a chunk inside its
    neighbour would add nothing."""
    if end >= len(words) or words[end] is None or words[end] != words[end - 1]:
        return end
    cut = end
    while cut > start and words[cut - 1] == words[end]:
        cut -= 1
    return cut if cut - start >= max(1, max_tokens // 2) and cut > after else end


def _snap_start(words: list[int | None], start: int, end: int) -> int:
    """Move ``start`` forward to the next word's first token (never past ``end``)."""
    while start < end and words[start] is not None and words[start] == words[start - 1]:
        start += 1
    return start
