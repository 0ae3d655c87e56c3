"""Chunking by tokens of the built-in MiniLM's own tokenizer: bounds, coverage, overlap."""

from __future__ import annotations

import itertools
import zipfile
from functools import cache
from pathlib import Path

import all_minilm_l6_v2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from aimass.errors import InvalidInput
from aimass.search.chunking import check_static, chunk_text


@cache
def minilm() -> Tokenizer:
    """The MiniLM package's ``tokenizer.json`` (it truncates and pads to 128 tokens, as shipped)."""
    archive = Path(all_minilm_l6_v2.__file__).with_name("model.zip")
    with zipfile.ZipFile(archive) as z:
        return Tokenizer.from_str(z.read("tokenizer.json").decode())


@cache
def plain() -> Tokenizer:
    tok = Tokenizer.from_str(minilm().to_str())
    tok.no_truncation()
    tok.no_padding()
    return tok


def tokens(text: str) -> list[tuple[int, int]]:
    return plain().encode(text, add_special_tokens=False).offsets


WORDS = st.sampled_from(
    [
        "the",
        "model",
        "serves",
        "embeddings",
        "unbelievably",
        "quick",
        "北京",
        "naïve",
        "x",
        "42",
        "co-operate",
        "\n\n",
        ".",
        "tokenization's",
    ]
)
TEXTS = st.lists(WORDS, max_size=400).map(" ".join)


def test_the_tokenizer_as_shipped_truncates_and_is_left_as_it_was():
    assert minilm().truncation is not None and minilm().padding is not None
    text = " ".join(["embedding"] * 1000)
    chunks = chunk_text(text, minilm(), 100, 20)
    assert sum(c.n_tokens for c in chunks) > 1000
    assert minilm().truncation is not None and minilm().padding is not None


def test_auto_sizes_on_a_long_text():
    text = " ".join(f"sentence number {i} about vector search." for i in range(600))
    chunks = chunk_text(text, minilm())
    assert [c.n_tokens for c in chunks[:-1]] == [800] * (len(chunks) - 1)
    assert chunks[0].text.startswith("sentence number 0")
    assert chunks[-1].text.endswith("599 about vector search.")
    first, second = chunks[0], chunks[1]
    assert second.start_char < first.end_char  # they overlap
    shared = text[second.start_char : first.end_char]
    assert 390 <= len(tokens(shared)) <= 400


def test_blank_text_has_no_chunks():
    assert chunk_text("", minilm()) == []
    assert chunk_text(" \n\t ", minilm()) == []


def test_short_text_is_one_chunk_with_its_own_bounds():
    [c] = chunk_text("  Hello, world!  ", minilm(), 100, 0)
    assert (c.text, c.start_char, c.end_char, c.n_tokens) == ("Hello, world!", 2, 15, 4)


def test_a_chunk_does_not_end_inside_a_word_when_it_can_end_before_it():
    text = ("aaa " * 99) + "unbelievably"  # 99 tokens, then a word of several pieces
    chunks = chunk_text(text, minilm(), 100, 0)
    assert chunks[0].n_tokens == 99
    assert chunks[1].text == "unbelievably"


def test_no_chunk_lies_inside_its_neighbour():
    # found by hypothesis: snapping the second chunk's end back before "embeddings" left it
    # as "the", inside the first
    chunks = chunk_text("the the embeddings", minilm(), 2, 1)
    assert [(c.start_char, c.end_char) for c in chunks][:2] == [(0, 7), (4, 10)]


@pytest.mark.parametrize(
    ("size", "overlap", "param"),
    [
        (99, 0, "chunking_strategy.static.max_chunk_size_tokens"),
        (4097, 0, "chunking_strategy.static.max_chunk_size_tokens"),
        (800, 401, "chunking_strategy.static.chunk_overlap_tokens"),
        (800, -1, "chunking_strategy.static.chunk_overlap_tokens"),
    ],
)
def test_static_bounds_are_openais(size, overlap, param):
    with pytest.raises(InvalidInput) as err:
        check_static(size, overlap)
    assert err.value.param == param


def test_static_bounds_accept_the_edges():
    check_static(100, 50)
    check_static(4096, 2048)
    check_static(800, 0)


@settings(max_examples=200, deadline=None)
@given(text=TEXTS, size=st.integers(1, 64), data=st.data())
def test_chunks_are_bounded_ordered_and_cover_every_token(text, size, data):
    overlap = data.draw(st.integers(0, size // 2))
    chunks = chunk_text(text, minilm(), size, overlap)
    offsets = tokens(text)
    assert bool(chunks) == bool(offsets)
    covered = set()
    for c in chunks:
        assert 1 <= c.n_tokens <= size
        assert c.text == text[c.start_char : c.end_char]
        inside = [i for i, (a, b) in enumerate(offsets) if a >= c.start_char and b <= c.end_char]
        assert len(inside) == c.n_tokens
        covered.update(inside)
    assert covered == set(range(len(offsets)))
    for a, b in itertools.pairwise(chunks):
        assert a.start_char < b.start_char and a.end_char < b.end_char
        shared = [i for i, (s, e) in enumerate(offsets) if s >= b.start_char and e <= a.end_char]
        assert len(shared) <= overlap
