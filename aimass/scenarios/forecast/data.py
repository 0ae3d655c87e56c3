"""Series files in long format: ``series_id``, ``timestamp``, ``value`` (other columns are
exogenous values: numbers, kept on the series' grid for the gradient-boosting model; the
statistical models do not use them)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
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
    exogenous: dict[str, np.ndarray] = field(default_factory=dict)
    """Column → its value at each step (NaN where the file left it empty or lacked the step)."""

    @property
    def end(self) -> float:
        return self.start + (len(self.values) - 1) * self.step


def default_season(step: float) -> int:
    if step in SEASONS:
        return SEASONS[step]
    if 28 * DAY <= step <= 31 * DAY:
        return 12
    return 1


def regular(
    sid: str,
    points: list[tuple[float, float, int]],
    step: float | None = None,
    columns: list[str] | None = None,
    extra: dict[int, list[float]] | None = None,
) -> Series:
    """A ``Series`` from (time, value, line) points: sorted, on one grid of ``step`` seconds
    (the smallest gap when None), gaps filled by interpolation; a duplicate or off-grid time
    is a ``TrainingFileError`` naming its line. ``extra`` maps a point's line to its values
    of the exogenous ``columns`` (not interpolated: a missing step stays NaN)."""
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
    exogenous = {}
    if columns and extra is not None:
        table = np.full((len(values), len(columns)), np.nan)
        table[index] = [extra[p[2]] for p in points]
        exogenous = {column: table[:, j].copy() for j, column in enumerate(columns)}
    return Series(sid, float(times[0]), step, values, int(missing.sum()), exogenous)


def read_series(path: Path, min_length: int = 2) -> tuple[list[Series], list[str]]:
    """The series of a long CSV and the names of its exogenous columns."""
    points: dict[str, list[tuple[float, float, int]]] = defaultdict(list)
    exogenous: dict[int, list[float]] = {}
    extra: list[str] | None = None
    for line, row in rows(path, ("series_id", "timestamp", "value")):
        if extra is None:
            extra = [c for c in row if c not in ("series_id", "timestamp", "value")]
        sid = row["series_id"]
        if not sid or len(sid) > MAX_ID_CHARS:
            raise TrainingFileError(f"must be 1 to {MAX_ID_CHARS} characters", line, "series_id")
        exogenous[line] = [number(row[c], line, c) if row[c] else np.nan for c in extra]
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
        series.append(regular(sid, found, columns=extra, extra=exogenous))
    steps = {s.step for s in series if len(s.values) > 1}
    if len(steps) > 1:
        raise TrainingFileError(
            f"the series have different steps ({', '.join(f'{x:g}' for x in sorted(steps))} s); "
            "train one model per frequency"
        )
    return series, extra or []


def naive_scale(y: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast (naive when too short): MASE's unit."""
    lag = season if len(y) > season else 1
    diffs = np.abs(y[lag:] - y[:-lag])
    scale = float(diffs.mean()) if len(diffs) else 0.0
    return scale if scale > 0 else 1.0


def extended(start: float, y: np.ndarray, step: float,
             late: list[tuple[float, float]]) -> np.ndarray:  # fmt: skip
    """``y`` with the ``late`` (time, value) points after its end (the last value sent for a
    time wins; gaps interpolated)."""
    points = [(start + i * step, float(v), 0) for i, v in enumerate(y)]
    last = {start + round((t - start) / step) * step: v for t, v in late}
    points += [(t, v, 0) for t, v in last.items()]
    return regular("series", points, step).values
