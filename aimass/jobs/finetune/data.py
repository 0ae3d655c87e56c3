"""Reading training files: JSONL objects or CSV rows, each error naming its line.

Validation runs in the server (in a thread) before any training: an invalid line fails the
job with ``param: training_file`` (or ``validation_file``) and the line number from 1, so a
user fixes the file instead of reading a training process's traceback.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Callable
from typing import Any

from aimass.jobs.kind import JobFailed

HOLDOUT_FRACTION = 0.2
"""Share of the training lines kept for evaluation when a job names no validation file."""


class LineError(ValueError):
    """One line of a file is invalid."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


class FileInvalid(JobFailed):
    """A job's file is invalid: OpenAI's ``invalid_training_file`` (or ``_validation_``)
    error, naming the parameter and, in the message and ``line``, the line."""

    def __init__(self, param: str, exc: ValueError) -> None:
        which = "training" if param == "training_file" else "validation"
        super().__init__(f"invalid {which} file: {exc}", f"invalid_{which}_file", param=param)
        self.line = getattr(exc, "line", None)

    def as_error(self) -> dict[str, Any]:
        return {**super().as_error(), "line": self.line}


def json_lines(data: bytes, check: Callable[[dict[str, Any]], dict[str, Any]]) -> list[dict]:
    """Every non-empty line as a JSON object passed through ``check`` (which raises
    ``ValueError`` naming the problem); the first bad line raises ``LineError``."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise LineError(line, "not UTF-8 text") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError as exc:
            raise LineError(number, f"not JSON ({exc.args[0]})") from None
        if not isinstance(value, dict):
            raise LineError(number, f"expected a JSON object, got {type(value).__name__}")
        try:
            rows.append(check(value))
        except ValueError as exc:
            raise LineError(number, str(exc)) from None
    return rows


def text_field(value: dict[str, Any], key: str, required: bool = True) -> str | None:
    """A non-empty string field of a line (``None`` when optional and absent)."""
    if key not in value or value[key] is None:
        if required:
            raise ValueError(f"missing {key!r}")
        return None
    text = value[key]
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{key!r} must be a non-empty string")
    return text


def csv_rows(
    data: bytes, label_column: str
) -> tuple[list[str], list[list[float]], list[str], list[int]]:
    """Feature names, feature rows (numbers), labels (as written) and line numbers of a CSV
    file with a header; an empty feature cell is a missing value (NaN), anything else must
    be a number."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineError(data[: exc.start].count(b"\n") + 1, "not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if not header:
        raise LineError(1, "the file is empty; expected a CSV header")
    header = [h.strip() for h in header]
    if label_column not in header:
        raise LineError(1, f"the header has no label column {label_column!r} ({header[:10]})")
    at = header.index(label_column)
    features: list[list[float]] = []
    labels: list[str] = []
    numbers: list[int] = []
    for number, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise LineError(number, f"{len(row)} values, the header has {len(header)}")
        label = row[at].strip()
        if not label:
            raise LineError(number, f"the label column {label_column!r} is empty")
        values = []
        for name, cell in zip(header, row, strict=True):
            if name == label_column:
                continue
            try:
                values.append(float(cell) if cell.strip() else float("nan"))
            except ValueError:
                raise LineError(number, f"column {name!r}: {cell!r} is not a number") from None
        features.append(values)
        labels.append(label)
        numbers.append(number)
    return [h for h in header if h != label_column], features, labels, numbers


def holdout(
    rows: list[Any], seed: int, class_of: Callable[[Any], str] | None = None
) -> tuple[list[Any], list[Any]]:
    """Training and held-out rows: a seeded shuffle, ``HOLDOUT_FRACTION`` held out (at least
    one row, and at least one left to train on).

    With ``class_of`` the split is stratified: each class with two rows or more gives the
    same share (at least one row) and keeps at least one to train on. Unstratified, 3 rows
    held out of 16 in two classes are all of one class one time in five, and then the
    evaluation has no AUC and a one-class accuracy."""
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    out: set[int] = set()
    if class_of is not None:
        classes: dict[str, list[int]] = {}
        for i in order:
            classes.setdefault(class_of(rows[i]), []).append(i)
        for members in classes.values():
            if len(members) >= 2:
                out.update(members[: _held(len(members))])
    if not out:  # unstratified, or no class has two rows
        out = set(order[: _held(len(rows))])
    keep = [rows[i] for i in range(len(rows)) if i not in out]
    return keep, [rows[i] for i in sorted(out)]


def _held(count: int) -> int:
    """How many of ``count`` rows are held out: the fraction, at least one, one kept."""
    return min(max(1, round(count * HOLDOUT_FRACTION)), count - 1)
