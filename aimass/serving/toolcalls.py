"""Tool calls read out of generated text, whole or as it streams.

Models write tool calls as text; this finds them. Two forms are read:

- ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks, anywhere in the answer
  (the form the built-in chat template teaches, the grammar of a forced call writes, and
  Hermes/Qwen-style models use);
- an answer that is, as a whole, one JSON object ``{"name": ..., "arguments"|"parameters":
  {...}}`` or a list of them (the Llama 3.x convention).

A block that does not parse, or names a function that was not offered, stays in the text: a
model's mistake is shown, never dropped. ``ToolCallParser.feed`` returns the text that is
safe to send as content now (holding back what may be the start of a ``<tool_call>`` tag, and
whitespace between calls) and the calls completed so far; ``finish`` flushes the rest.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

OPEN, CLOSE = "<tool_call>", "</tool_call>"


@dataclass(frozen=True)
class ParsedCall:
    id: str
    name: str
    arguments: str
    """The arguments as JSON text (OpenAI's ``function.arguments``)."""


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:24]


def _tail_overlap(text: str, tag: str) -> int:
    """How many trailing characters of ``text`` could start ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


@dataclass
class ToolCallParser:
    """Splits one choice's text into content and tool calls of the offered ``names``."""

    names: frozenset[str]
    calls: list[ParsedCall] = field(default_factory=list)
    _pending: str = ""
    _in_call: bool = False
    _whole_json: bool | None = None
    """Decided at the first visible character: an answer that opens with ``{`` or ``[`` may be
    a bare JSON call, and is held until it ends."""
    _space: str = ""

    def feed(self, text: str) -> tuple[str, list[ParsedCall]]:
        """Take the next piece of text; return (content to send now, calls completed)."""
        self._pending += text
        if self._whole_json is None:
            head = self._pending.lstrip()
            if not head:
                return "", []
            self._whole_json = head[0] in "{["
        if self._whole_json:
            return "", []
        before = len(self.calls)
        content = "".join(self._visible(piece) for piece in self._scan())
        return content, self.calls[before:]

    def finish(self) -> tuple[str, list[ParsedCall]]:
        """The end of the answer: whatever is still held, and the calls it completes."""
        before = len(self.calls)
        rest, self._pending = self._pending, ""
        if self._whole_json:
            calls = _bare_calls(rest, self.names)
            if calls is not None:
                self.calls += calls
                return "", calls
            return self._space + rest, []
        if self._in_call:  # cut short (max_tokens): a complete object still counts
            call = _one_call(rest[: len(rest) - _tail_overlap(rest, CLOSE)], self.names)
            if call is not None:
                self.calls.append(call)
                rest = ""
            else:
                rest = OPEN + rest
        content = self._visible(rest)
        if not self.calls:
            content = self._space + content
        self._space = ""
        return content, self.calls[before:]

    def _scan(self) -> list[str]:
        """The content pieces around the calls completed by the pending text."""
        content = []
        while True:
            if not self._in_call:
                at = self._pending.find(OPEN)
                if at < 0:
                    keep = _tail_overlap(self._pending, OPEN)
                    cut = len(self._pending) - keep
                    content.append(self._pending[:cut])
                    self._pending = self._pending[cut:]
                    return content
                content.append(self._pending[:at])
                self._pending = self._pending[at + len(OPEN) :]
                self._in_call = True
            at = self._pending.find(CLOSE)
            if at < 0:
                return content
            body = self._pending[:at]
            self._pending = self._pending[at + len(CLOSE) :]
            self._in_call = False
            call = _one_call(body, self.names)
            if call is None:
                content.append(OPEN + body + CLOSE)
            else:
                self.calls.append(call)

    def _visible(self, content: str) -> str:
        """Hold whitespace-only content (between calls, around them) until real text
        follows; it is dropped when the answer turns out to hold calls."""
        if not content.strip():
            self._space += content
            return ""
        out = ("" if self.calls else self._space) + content
        self._space = ""
        return out


def _one_call(text: str, names: frozenset[str]) -> ParsedCall | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return _as_call(value, names)


def _bare_calls(text: str, names: frozenset[str]) -> list[ParsedCall] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    items = value if isinstance(value, list) else [value]
    calls = [_as_call(item, names) for item in items]
    if not calls or any(call is None for call in calls):
        return None
    return calls  # type: ignore[return-value]


def _as_call(value: Any, names: frozenset[str]) -> ParsedCall | None:
    if not isinstance(value, dict) or value.get("name") not in names:
        return None
    arguments = value.get("arguments", value.get("parameters", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, dict):
        return None
    text = json.dumps(arguments, ensure_ascii=False)
    return ParsedCall(id=new_call_id(), name=value["name"], arguments=text)
