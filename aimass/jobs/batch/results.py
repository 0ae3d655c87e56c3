"""The answers of a running batch, appended to a file in the job's folder as they arrive.

Each record is one JSON line ``{"i": <line index>, "ok": bool, "line": <the output line>}``
written and flushed at once, so a server killed with ``kill -9`` loses at most the line being
written; reopening drops a torn last record and keeps the rest. A line answered twice (sent
again after a crash, before its first answer was counted) keeps its first answer, so the output
has each line exactly once. The output and error files are written from here in input order.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from aimass.jobs.batch.validate import Line

_DUMP = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_APPEND_NEWLINE


@dataclass
class Tally:
    """What the answers so far add up to (``request_counts`` and ``usage`` of the batch)."""

    completed: int = 0
    failed: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0

    def add(self, ok: bool, body: Any) -> None:
        if ok:
            self.completed += 1
        else:
            self.failed += 1
        usage = body.get("usage") if isinstance(body, dict) else None
        if isinstance(usage, dict):
            self.input_tokens += int(usage.get("prompt_tokens") or 0)
            details = usage.get("prompt_tokens_details") or {}
            self.cached_tokens += int(details.get("cached_tokens") or 0)
            self.output_tokens += int(usage.get("completion_tokens") or 0)

    def usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": self.cached_tokens},
            "output_tokens": self.output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + self.output_tokens,
        }


@dataclass
class ResultLog:
    """The answers file of one batch: where each answered line's record starts and ends."""

    path: Path
    spans: dict[int, tuple[int, int, bool]] = field(default_factory=dict)
    """Line index → (offset, length, ok) of its first answer."""
    tally: Tally = field(default_factory=Tally)

    @classmethod
    def open(cls, path: Path) -> ResultLog:
        """Read what an earlier attempt wrote (truncating a torn last record)."""
        log = cls(path)
        if not path.exists():
            path.touch()
            return log
        good = 0
        with path.open("rb") as f:
            for raw in f:
                try:
                    record = orjson.loads(raw)
                except orjson.JSONDecodeError:
                    break
                if not raw.endswith(b"\n"):
                    break
                log._index(record, good, len(raw))
                good += len(raw)
        os.truncate(path, good)
        return log

    def _index(self, record: dict[str, Any], offset: int, length: int) -> None:
        index = record["i"]
        if index in self.spans:
            return
        self.spans[index] = (offset, length, record["ok"])
        response = record["line"].get("response") or {}
        self.tally.add(record["ok"], response.get("body"))

    def append(self, index: int, ok: bool, line: dict[str, Any]) -> None:
        """Write one answer now (flushed: a killed server keeps it)."""
        record = {"i": index, "ok": ok, "line": line}
        raw = orjson.dumps(record, option=_DUMP)
        with self.path.open("ab") as f:
            offset = f.tell()
            f.write(raw)
        self._index(record, offset, len(raw))

    def sync(self) -> None:
        """Make what was written survive a crash of the machine, not only of the server."""
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def outputs(
        self, lines: list[Line], unanswered: dict[str, str] | None
    ) -> Iterator[tuple[bool, bytes]]:
        """(ok, output line) for every line in input order; a line never answered comes out as
        an error with ``unanswered``'s code and message (cancelled, expired), or not at all."""
        with self.path.open("rb") as f:
            for line in lines:
                span = self.spans.get(line.index)
                if span is not None:
                    offset, length, ok = span
                    f.seek(offset)
                    record = orjson.loads(f.read(length))
                    yield ok, orjson.dumps(record["line"], option=orjson.OPT_APPEND_NEWLINE)
                elif unanswered is not None:
                    missing = {
                        "id": f"batch_req_{uuid.uuid4().hex[:24]}",
                        "custom_id": line.custom_id,
                        "response": None,
                        "error": unanswered,
                    }
                    yield False, orjson.dumps(missing, option=orjson.OPT_APPEND_NEWLINE)
