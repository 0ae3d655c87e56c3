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

A parser made for a stream also queues ``CallDelta`` pieces, as OpenAI streams calls: the id
and name as soon as a tagged call has written ``{"name": "<offered>", "arguments": {``, then
its arguments as they are written (the block's closing ``}`` and white space held back until
more text shows they are not its end). Once its head is sent, a call stays a call: if its
arguments then turn out not to be valid JSON, the stream keeps them as written, as OpenAI's
own ``arguments`` are not guaranteed to parse. Calls found only whole (a bare JSON answer,
arguments written as a JSON string) are queued whole: the head, then all the arguments.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field, replace
from typing import Any

OPEN, CLOSE = "<tool_call>", "</tool_call>"
HEAD = re.compile(
    r'\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*(?=\{)'
)
"""The start of a tagged call whose arguments can stream: its name first, then an object."""


@dataclass(frozen=True)
class ParsedCall:
    id: str
    name: str
    arguments: str
    """The arguments as JSON text (OpenAI's ``function.arguments``)."""


@dataclass(frozen=True)
class CallDelta:
    """One stream piece of the call at ``index``: its head (``id`` and ``name`` set, no
    arguments yet) or the next part of its arguments."""

    index: int
    arguments: str = ""
    id: str | None = None
    name: str | None = None


@dataclass
class _Open:
    """A tagged call whose head was sent and whose arguments are streaming."""

    index: int
    id: str
    name: str
    start: int
    """Where the arguments begin in the block's text."""
    sent: int = 0
    """How many characters of the arguments were sent."""


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
    stream: bool = False
    """Queue ``CallDelta`` pieces (``take_deltas``) as well as whole calls."""
    calls: list[ParsedCall] = field(default_factory=list)
    _deltas: list[CallDelta] = field(default_factory=list)
    _open: _Open | None = None
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
                for call in calls:
                    self._queue_whole(len(self.calls), call)
                    self.calls.append(call)
                return "", calls
            return self._space + rest, []
        if self._in_call:  # cut short (max_tokens): a complete object still counts
            call = self._close(rest[: len(rest) - _tail_overlap(rest, CLOSE)])
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
                if self.stream:
                    self._stream(
                        self._pending[: len(self._pending) - _tail_overlap(self._pending, CLOSE)]
                    )
                return content
            body = self._pending[:at]
            self._pending = self._pending[at + len(CLOSE) :]
            self._in_call = False
            call = self._close(body)
            if call is None:
                content.append(OPEN + body + CLOSE)
            else:
                self.calls.append(call)

    def take_deltas(self) -> list[CallDelta]:
        """The stream pieces queued since the last call."""
        deltas, self._deltas = self._deltas, []
        return deltas

    def _stream(self, body: str) -> None:
        """Send what can be sent of the call being written: its head once its name is known
        to be offered, then its arguments so far."""
        if self._open is None:
            head = HEAD.match(body)
            if head is None or (name := _json_string(head.group(1))) not in self.names:
                return
            self._open = _Open(len(self.calls), new_call_id(), name, head.end())
            self._deltas.append(CallDelta(self._open.index, id=self._open.id, name=name))
        opened = self._open
        arguments = _held(body[opened.start :])
        if len(arguments) > opened.sent:
            self._deltas.append(CallDelta(opened.index, arguments[opened.sent :]))
            opened.sent = len(arguments)

    def _close(self, body: str) -> ParsedCall | None:
        """The call a whole block makes, if any. A streaming call always makes one (its head
        was sent) and keeps its arguments as streamed."""
        call = _one_call(body, self.names)
        if self.stream:
            self._stream(body)  # the rest of its arguments; or all of a block that came whole
        opened, self._open = self._open, None
        if opened is None:
            if call is not None:
                self._queue_whole(len(self.calls), call)
            return call
        arguments = _held(body[opened.start :])
        if call is None:
            return ParsedCall(id=opened.id, name=opened.name, arguments=arguments)
        return replace(call, id=opened.id, arguments=arguments)

    def _queue_whole(self, index: int, call: ParsedCall) -> None:
        if self.stream:
            self._deltas.append(CallDelta(index, id=call.id, name=call.name))
            self._deltas.append(CallDelta(index, call.arguments))

    def _visible(self, content: str) -> str:
        """Hold whitespace-only content (between calls, around them) until real text
        follows; it is dropped when the answer turns out to hold calls."""
        if not content.strip():
            self._space += content
            return ""
        out = ("" if self.calls else self._space) + content
        self._space = ""
        return out


def _held(text: str) -> str:
    """The arguments part of a block's text, less what may be the block's own closing ``}``
    (and the white space around it)."""
    text = text.rstrip()
    if text.endswith("}"):
        text = text[:-1].rstrip()
    return text


def _json_string(body: str) -> str | None:
    try:
        return json.loads(f'"{body}"')
    except ValueError:
        return None


def _one_call(text: str, names: frozenset[str]) -> ParsedCall | None:
    """The call a block makes; its arguments as the model wrote them when that text is the
    arguments object itself (so a stream and a whole answer agree), else re-serialized."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    call = _as_call(value, names)
    head = HEAD.match(text)
    if call is None or head is None:
        return call
    written = _held(text[head.end() :])
    try:
        same = json.loads(written) == json.loads(call.arguments)
    except ValueError:
        same = False
    return replace(call, arguments=written) if same else call


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
