"""Turning generated tokens into streamed text: UTF-8 reassembly and stop strings.

A token can end in the middle of a UTF-8 character, and the text streamed so far may end
with the first half of a stop string. ``TextStream`` holds back exactly those bytes and
characters, so a client never sees a broken character or a half-matched stop string.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field


def held_back(text: str, stops: list[str]) -> int:
    """How many trailing characters of ``text`` could still start one of ``stops``."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), longest, -1):
            if text.endswith(stop[:size]):
                longest = size
                break
    return longest


@dataclass
class TextStream:
    """Accumulates token bytes; ``push`` returns the text that is safe to send now."""

    stops: list[str] = field(default_factory=list)
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _pending: str = ""
    stopped: bool = False
    """True once a stop string was found; nothing after it is ever sent."""

    def push(self, piece: bytes) -> str:
        """Add one token's bytes; return the newly releasable text (may be empty)."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(piece)
        return self._release(final=False)

    def finish(self) -> str:
        """Flush everything still held (the stream ended without a stop string)."""
        if self.stopped:
            return ""
        self._pending += self._decoder.decode(b"", final=True)
        return self._release(final=True)

    def _release(self, *, final: bool) -> str:
        text = self._pending
        cut = self._first_stop(text)
        if cut is not None:
            self.stopped = True
            self._pending = ""
            return text[:cut]
        keep = 0 if final else held_back(text, self.stops)
        self._pending = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def _first_stop(self, text: str) -> int | None:
        hits = [i for i in (text.find(s) for s in self.stops if s) if i >= 0]
        return min(hits) if hits else None
