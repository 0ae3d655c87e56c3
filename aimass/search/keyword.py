"""Keyword search: Okapi BM25 over a store's chunks, in memory, updated in place.

An inverted index (term -> {chunk id: term frequency}) with document lengths, so adding or
removing a file's chunks costs only those chunks, and a query reads only the postings of its
own terms. It is rebuilt from the database's chunks when a store is opened (the database holds
the truth), which works the same on SQLite and PostgreSQL. Terms are lower-cased runs of word
characters (Unicode-aware), without a stemmer; numbers are terms too.
"""

from __future__ import annotations

import heapq
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable

_TERM = re.compile(r"\w+", re.UNICODE)

K1 = 1.2
B = 0.75
"""The usual BM25 constants (Robertson and Zaragoza, 2009)."""


def terms(text: str) -> list[str]:
    return _TERM.findall(text.lower())


class BM25:
    """The BM25 index of one store's chunks."""

    def __init__(self) -> None:
        self._postings: dict[str, dict[int, int]] = {}
        self._lengths: dict[int, int] = {}
        self._total = 0

    def __len__(self) -> int:
        return len(self._lengths)

    def add(self, items: Iterable[tuple[int, str]]) -> None:
        """Index ``(chunk id, text)`` pairs."""
        for key, text in items:
            counts = Counter(terms(text))
            self._lengths[key] = n = sum(counts.values())
            self._total += n
            for term, tf in counts.items():
                self._postings.setdefault(term, {})[key] = tf

    def remove(self, items: Iterable[tuple[int, str]]) -> None:
        """Forget ``(chunk id, text)`` pairs (the text says which postings hold the id)."""
        for key, text in items:
            n = self._lengths.pop(key, None)
            if n is None:
                continue
            self._total -= n
            for term in set(terms(text)):
                posting = self._postings.get(term)
                if posting is not None:
                    posting.pop(key, None)
                    if not posting:
                        del self._postings[term]

    def search(
        self, query: str, limit: int, keep: Callable[[int], bool] | None = None
    ) -> list[tuple[int, float]]:
        """The ``limit`` best ``(chunk id, score)`` for ``query``, best first; ``keep`` drops
        chunks (filters, deleted files) before they take a place."""
        n_docs = len(self._lengths)
        if not n_docs or limit <= 0:
            return []
        avg = self._total / n_docs
        scores: dict[int, float] = {}
        for term in set(terms(query)):
            posting = self._postings.get(term)
            if not posting:
                continue
            idf = math.log(1.0 + (n_docs - len(posting) + 0.5) / (len(posting) + 0.5))
            for key, tf in posting.items():
                norm = K1 * (1.0 - B + B * self._lengths[key] / avg)
                scores[key] = scores.get(key, 0.0) + idf * tf * (K1 + 1.0) / (tf + norm)
        candidates = (
            scores.items() if keep is None else ((k, s) for k, s in scores.items() if keep(k))
        )
        return heapq.nlargest(limit, candidates, key=lambda item: (item[1], -item[0]))
