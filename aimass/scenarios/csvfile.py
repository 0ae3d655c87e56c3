"""Reading a user's CSV training file with errors that name the line and the column.

A training job that fails must say what to fix: ``TrainingFileError`` carries the 1-based line
number of the file (the header is line 1) and the column's name.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path


class TrainingFileError(ValueError):
    """A training file that cannot be used, with where (line, column) and why."""

    def __init__(self, message: str, line: int | None = None, column: str | None = None):
        parts = (f"line {line}" if line else "", f"column {column!r}" if column else "")
        where = ", ".join(part for part in parts if part)
        super().__init__(f"{where}: {message}" if where else message)
        self.line, self.column = line, column


def rows(path: Path, required: tuple[str, ...]) -> Iterator[tuple[int, dict[str, str]]]:
    """Each data row as (line number, column → text), after checking the header has
    ``required``; empty lines are skipped."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        try:
            header = [name.strip() for name in next(reader)]
        except StopIteration:
            raise TrainingFileError("the file is empty; it needs a header line", 1) from None
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TrainingFileError(f"not a CSV file ({exc})", 1) from None
        missing = [name for name in required if name not in header]
        if missing:
            raise TrainingFileError(
                f"the header lacks column(s) {', '.join(missing)} (it has {', '.join(header)})",
                1,
            )
        try:
            for values in reader:
                if not values or all(not v.strip() for v in values):
                    continue
                if len(values) != len(header):
                    raise TrainingFileError(
                        f"has {len(values)} fields, the header has {len(header)}",
                        reader.line_num,
                    )
                yield reader.line_num, dict(zip(header, (v.strip() for v in values), strict=True))
        except (csv.Error, UnicodeDecodeError) as exc:
            raise TrainingFileError(f"not a CSV line ({exc})", reader.line_num) from None


def number(text: str, line: int, column: str) -> float:
    """A finite number, or a ``TrainingFileError`` naming where it is not one."""
    try:
        value = float(text)
    except ValueError:
        raise TrainingFileError(f"{text!r} is not a number", line, column) from None
    if not math.isfinite(value):
        raise TrainingFileError(f"{text!r} is not a finite number", line, column)
    return value


def timestamp(text: str, line: int, column: str) -> float:
    """Seconds since the epoch (UTC) from an ISO 8601 date/time or a number of seconds."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise TrainingFileError(
            f"{text!r} is neither an ISO 8601 date/time nor seconds since the epoch", line, column
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
