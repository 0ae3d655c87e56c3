"""Attribute filters of a vector store search, as OpenAI defines them.

A filter is a comparison ``{"type": "eq|ne|gt|gte|lt|lte|in|nin", "key": ..., "value": ...}``
or a compound ``{"type": "and|or", "filters": [...]}`` of filters. It is checked against the
``attributes`` of the file a chunk belongs to. A key the file does not have fails every
comparison but ``ne`` and ``nin``; ordering comparisons between a number and a string are false
(never an error), so one odd attribute cannot break a search. The shape of a filter is validated
by the wire types (``protocols/vector_stores.py``) before it reaches ``matches``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

Attributes = Mapping[str, str | float | bool]

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


def matches(flt: Mapping[str, Any] | None, attributes: Attributes) -> bool:
    """Whether ``attributes`` pass ``flt`` (``None`` passes everything)."""
    if flt is None:
        return True
    kind = flt["type"]
    if kind == "and":
        return all(matches(f, attributes) for f in flt["filters"])
    if kind == "or":
        return any(matches(f, attributes) for f in flt["filters"])
    return _compare(kind, attributes.get(flt["key"], _MISSING), flt["value"])


class _Missing:
    """The value of a key a file does not have: equal to nothing."""


_MISSING = _Missing()


def _compare(kind: str, have: Any, want: Any) -> bool:
    if kind == "eq":
        return _same(have, want)
    if kind == "ne":
        return not _same(have, want)
    if kind == "in":
        return any(_same(have, w) for w in want)
    if kind == "nin":
        return not any(_same(have, w) for w in want)
    if not _comparable(have, want):
        return False
    return _ORDER[kind](have, want)


def _same(have: Any, want: Any) -> bool:
    """Equality that keeps booleans apart from numbers (``True`` is not ``1`` here)."""
    if isinstance(have, bool) or isinstance(want, bool):
        return isinstance(have, bool) and isinstance(want, bool) and have == want
    return have == want


def _comparable(have: Any, want: Any) -> bool:
    numbers = (int, float)
    if isinstance(have, bool) or isinstance(want, bool):
        return False
    if isinstance(have, numbers) and isinstance(want, numbers):
        return True
    return isinstance(have, str) and isinstance(want, str)
