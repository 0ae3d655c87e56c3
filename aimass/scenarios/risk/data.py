"""Reading a transactions file (CSV with a header, or JSON Lines) into event dicts, with errors
that name the line."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from aimass.errors import InvalidInput

MAX_FIELD_CHARS = 1000


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every event of a CSV (first line a header) or JSON Lines file (first character ``{``)."""
    text = path.read_bytes().decode("utf-8", errors="strict")
    if not text.strip():
        raise InvalidInput("the file is empty")
    if text.lstrip().startswith("{"):
        events = []
        for n, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError as exc:
                raise InvalidInput(f"line {n}: not JSON ({exc})") from None
            if not isinstance(event, dict):
                raise InvalidInput(f"line {n}: an event must be a JSON object")
            events.append(event)
        return events
    reader = csv.DictReader(io.StringIO(text))
    events = []
    for row in reader:
        if None in row:
            raise InvalidInput(f"line {reader.line_num}: more fields than the header has")
        events.append({k: v for k, v in row.items() if v is not None})
    if not events:
        raise InvalidInput("the file has a header but no rows")
    return events


def label(event: dict[str, Any], column: str, row: int) -> int | None:
    """The 0/1 label of an event, None when the column is empty or absent (unlabelled)."""
    value = event.get(column)
    if value is None or value == "":
        return None
    if value in (0, 1, "0", "1", True, False, "true", "false", "True", "False"):
        return int(value in (1, "1", True, "true", "True"))
    raise InvalidInput(
        f"row {row}: column {column!r} must be 0 or 1 (or empty), got {str(value)[:50]!r}",
        param=column,
    )
