"""OpenAI's chat fine-tuning JSONL, checked line by line before any training starts.

A line is ``{"messages": [...]}``: ``system`` (optional, first), then ``user`` and
``assistant`` turns alternating, ending with an ``assistant`` turn (the thing learned). An
assistant message may carry ``weight`` 0 or 1 (0: shown to the model, not learned), as in
OpenAI's format. Every problem is reported with its 1-based line number, so a user can fix the
file; a file with any invalid line trains nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aimass.errors import InvalidInput

ROLES = ("system", "user", "assistant")
MAX_ERRORS = 20
"""Problems listed in one error (the count of the rest is given)."""


def validate_chat_lines(lines: Iterable[str | bytes]) -> list[dict[str, Any]]:
    """The examples of a chat JSONL file as ``{"messages": [{role, content, weight}]}``.

    Raises ``InvalidInput`` (param ``training_file``) listing each invalid line as
    ``line N: problem``; blank lines are skipped."""
    examples: list[dict[str, Any]] = []
    problems: list[str] = []
    for number, raw in enumerate(lines, start=1):
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        try:
            examples.append(parse_line(text))
        except ValueError as exc:
            problems.append(f"line {number}: {exc}")
    if problems:
        more = len(problems) - MAX_ERRORS
        listed = "; ".join(problems[:MAX_ERRORS]) + (f"; and {more} more" if more > 0 else "")
        raise InvalidInput(f"invalid chat training data: {listed}", param="training_file")
    if not examples:
        raise InvalidInput("the chat training data holds no examples", param="training_file")
    return examples


def parse_line(text: str) -> dict[str, Any]:
    """One example, or ``ValueError`` saying what is wrong with the line."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
        raise ValueError('expected an object with a "messages" list')
    messages = [_message(i, m) for i, m in enumerate(data["messages"])]
    _check_order(messages)
    return {"messages": messages}


def _message(index: int, message: Any) -> dict[str, Any]:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise ValueError(f"{where} is not an object")
    role, content = message.get("role"), message.get("content")
    if role not in ROLES:
        raise ValueError(f"{where}.role must be one of {', '.join(ROLES)}, got {role!r}")
    if not isinstance(content, str) or not content.strip():
        raise ValueError(f"{where}.content must be a non-empty string")
    weight = message.get("weight", 1)
    if "weight" in message and role != "assistant":
        raise ValueError(f"{where}.weight is allowed on assistant messages only")
    if weight not in (0, 1) or isinstance(weight, bool):
        raise ValueError(f"{where}.weight must be 0 or 1, got {weight!r}")
    return {"role": role, "content": content, "weight": int(weight)}


def _check_order(messages: list[dict[str, Any]]) -> None:
    turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if not turns:
        raise ValueError("messages holds no user and assistant turns")
    for i, message in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            raise ValueError(
                f"roles must alternate user/assistant after an optional first system message; "
                f"turn {i + 1} is {message['role']!r}, expected {expected!r}"
            )
    if turns[-1]["role"] != "assistant":
        raise ValueError("the last message must be an assistant message (what is learned)")
    if not any(m["weight"] for m in turns if m["role"] == "assistant"):
        raise ValueError("every assistant message has weight 0: nothing to learn")
