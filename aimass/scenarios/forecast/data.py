"""Series files in long format: ``series_id``, ``timestamp``, ``value`` (other columns are
exogenous values: numbers, checked, not used by the statistical models)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aimass.scenarios.csvfile import TrainingFileError, number, rows, timestamp

MAX_ID_CHARS = 256
DAY = 86400.0
SEASONS = {3600.0: 24, DAY: 7, 7 * DAY: 52}
"""Default season length by step: hourly data repeats daily, daily data weekly, weekly yearly."""


@dataclass
class Series:
    """One regular series: ``values[i]`` at ``start + i * step`` (seconds since the epoch)."""

    id: str
    start: float
    step: float
    values: np.ndarray
    filled: int = 0
    """Missing steps filled by linear interpolation."""

    @property
    def end(self) -> float:
        return self.start + (len(self.values) - 1) * self.step


def default_season(step: float) -> int:
    if step in SEASONS:
        return SEASONS[step]
    if 28 * DAY <= step <= 31 * DAY:
        return 12
    return 1


def regular(sid: str, points: list[tuple[float, float, int]], step: float | None = None) -> Series:
    """A ``Series`` from (time, value, line) points: sorted, on one grid of ``step`` seconds
    (the smallest gap when None), gaps filled by interpolation; a duplicate or off-grid time
    is a ``TrainingFileError`` naming its line."""
    points = sorted(points)
    times = np.asarray([p[0] for p in points])
    gaps = np.diff(times)
    for gap, point in zip(gaps, points[1:], strict=True):
        if gap == 0:
            raise TrainingFileError(f"series {sid!r} has this timestamp twice", point[2],
                                    "timestamp")  # fmt: skip
    if step is None:
        step = float(gaps.min()) if len(gaps) else DAY
    offsets = (times - times[0]) / step
    index = np.rint(offsets).astype(np.int64)
    off = np.flatnonzero(np.abs(offsets - index) > 1e-6)
    if len(off):
        raise TrainingFileError(
            f"series {sid!r}: this timestamp is not on the series' grid of {step:g} s steps",
            points[off[0]][2], "timestamp",
        )  # fmt: skip
    values = np.full(index[-1] + 1, np.nan)
    values[index] = [p[1] for p in points]
    missing = np.isnan(values)
    if missing.any():
        known = np.flatnonzero(~missing)
        values[missing] = np.interp(np.flatnonzero(missing), known, values[known])
    return Series(sid, float(times[0]), step, values, int(missing.sum()))


def read_series(path: Path, min_length: int = 2) -> tuple[list[Series], list[str]]:
    """The series of a long CSV and the names of its exogenous columns."""
    points: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    extra: list[str] | None = None
    for line, row in rows(path, ("series_id", "timestamp", "value")):
        if extra is None:
            extra = [c for c in row if c not in ("series_id", "timestamp", "value")]
        sid = row["series_id"]
        if not sid or len(sid) > MAX_ID_CHARS:
            raise TrainingFileError(f"must be 1 to {MAX_ID_CHARS} characters", line, "series_id")
        for column in extra:
            if row[column]:
                number(row[column], line, column)
        when = timestamp(row["timestamp"], line, "timestamp")
        points[sid].append((when, number(row["value"], line, "value"), line))
    if not points:
        raise TrainingFileError("the file has no rows (only a header)", 2)
    series = []
    for sid, found in points.items():
        if len(found) < min_length:
            raise TrainingFileError(
                f"series {sid!r} has {len(found)} points; at least {min_length} are needed",
                found[-1][2], "series_id",
            )  # fmt: skip
        series.append(regular(sid, found))
    steps = {s.step for s in series if len(s.values) > 1}
    if len(steps) > 1:
        raise TrainingFileError(
            f"the series have different steps ({', '.join(f'{x:g}' for x in sorted(steps))} s); "
            "train one model per frequency"
        )
    return series, extra or []
