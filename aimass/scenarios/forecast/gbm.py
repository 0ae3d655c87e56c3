"""The global gradient-boosting forecaster: one LightGBM model over every series, on lag
features, calendar features, the series id and the file's exogenous columns.

Each series is divided by its scale (the mean absolute value of the points the model trains
on), so one model learns the shapes of series of every size. A target at step ``t`` sees only
values before ``t`` (lags 1..7, 14, 28 and the means of the last 7 and 28 values; NaN where
the series is shorter), the calendar of ``t`` (day of week, month), the series' code (a
categorical) and the exogenous values at ``t``, which a forecast must therefore be given for
its horizon. Forecasts are recursive: each step's prediction becomes the next step's lag 1.

Intervals are conformal: the absolute backtest errors (scaled) are kept per horizon step, and
the ``level`` % interval is the forecast plus or minus their ``level`` % quantile (times the
series' scale). A backtest window's coverage is measured with the errors of the other
windows, so the reported coverage is out of sample when there are two windows or more.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aimass.errors import InvalidInput
from aimass.scenarios.forecast.data import DAY, Series, extended, naive_scale, regular

LAGS = (1, 2, 3, 4, 5, 6, 7, 14, 28)
MEANS = (7, 28)
CONTEXT = max(*LAGS, *MEANS)
"""Values before a target that its features read."""
MIN_PAST = 7
"""A training target needs this many earlier values (longer lags are NaN until there)."""
PARAMS: dict[str, Any] = {
    "objective": "regression",
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_data_in_leaf": 20,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "max_cat_to_onehot": 8,
    "verbose": -1,
    "seed": 7,
    "num_threads": 1,
}
ROUNDS = 300
"""Boosting rounds; one thread (a training job runs as one low-priority child)."""
METHOD = "LightGBM"


def feature_names(columns: list[str]) -> list[str]:
    return [
        *(f"lag_{n}" for n in LAGS),
        *(f"mean_{n}" for n in MEANS),
        "day_of_week",
        "month",
        "series",
        *(f"x_{c}" for c in columns),
    ]


def calendar(times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Day of week (Monday 0) and month (1..12) of Unix times (UTC)."""
    days = np.floor(times / DAY)
    months = times.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
    return (days + 3) % 7, months % 12 + 1


def features(
    past: np.ndarray, times: np.ndarray, codes: np.ndarray, exogenous: np.ndarray
) -> np.ndarray:
    """Feature rows for targets at ``times``: ``past[:, -1]`` is the value just before each
    target (scaled, NaN-padded on the left), ``exogenous`` the values at the targets."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = [np.nanmean(past[:, -n:], axis=1) for n in MEANS]
    dow, month = calendar(times)
    return np.column_stack([*(past[:, -n] for n in LAGS), *means, dow, month, codes, exogenous])


def padded(y: np.ndarray) -> np.ndarray:
    return np.concatenate([np.full(CONTEXT, np.nan), y])


def scale_of(y: np.ndarray) -> float:
    scale = float(np.mean(np.abs(y))) if len(y) else 0.0
    return scale if scale > 0 else 1.0


def exogenous_table(s: Series, columns: list[str], begin: int, end: int) -> np.ndarray:
    table = np.full((end - begin, len(columns)), np.nan)
    for j, c in enumerate(columns):
        if c in s.exogenous:
            table[:, j] = s.exogenous[c][begin:end]
    return table


def training_rows(
    series: list[Series], cuts: list[int], codes: dict[str, int], columns: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Features and scaled targets of every series' points before its cut."""
    xs, ys = [], []
    for s, cut in zip(series, cuts, strict=True):
        if cut <= MIN_PAST:
            continue
        y = s.values[:cut] / scale_of(s.values[:cut])
        windows = np.lib.stride_tricks.sliding_window_view(padded(y), CONTEXT)
        targets = np.arange(MIN_PAST, cut)
        times = s.start + targets * s.step
        code = np.full(len(targets), codes[s.id], dtype=float)
        xs.append(
            features(windows[targets], times, code, exogenous_table(s, columns, MIN_PAST, cut))
        )
        ys.append(y[MIN_PAST:])
    if not xs:
        raise ValueError(f"no series has more than {MIN_PAST} points to train the GBM on")
    return np.concatenate(xs), np.concatenate(ys)


def train(x: np.ndarray, y: np.ndarray, columns: list[str]) -> Any:
    import lightgbm

    names = feature_names(columns)
    data = lightgbm.Dataset(
        x, y, feature_name=names, categorical_feature=["series"], free_raw_data=True
    )
    return lightgbm.train(PARAMS, data, num_boost_round=ROUNDS)


def recursive(
    booster: Any,
    tails: np.ndarray,
    ends: np.ndarray,
    step: float,
    codes: np.ndarray,
    future: np.ndarray,
) -> np.ndarray:
    """Scaled forecasts of ``future.shape[1]`` steps for each row: ``tails`` are the last
    ``CONTEXT`` scaled values (NaN-padded), ``ends`` the times of the last ones, ``future``
    (rows, h, columns) the exogenous values at each forecast step."""
    h = future.shape[1]
    buffer = np.concatenate([tails, np.empty((len(tails), h))], axis=1)
    for k in range(h):
        past = buffer[:, k : k + CONTEXT]
        x = features(past, ends + (k + 1) * step, codes, future[:, k, :])
        buffer[:, CONTEXT + k] = booster.predict(x, num_threads=1)
    return buffer[:, CONTEXT:]


def tail(y: np.ndarray, scale: float) -> np.ndarray:
    return padded(y / scale)[-CONTEXT:]


def conformal(errors: np.ndarray, level: int, ordered: bool = False) -> float:
    """The split-conformal quantile of absolute errors for ``level`` % coverage
    (``ordered``: they are sorted already)."""
    ordered = errors if ordered else np.sort(errors)
    rank = min(len(ordered), math.ceil((len(ordered) + 1) * level / 100))
    return float(ordered[rank - 1])


@dataclass
class GbmBacktest:
    """Per backtested series: its MASE and per-level coverage, over the same rolling origins
    as the statistical backtest; and the scaled absolute errors per horizon step."""

    mase: dict[str, float] = field(default_factory=dict)
    coverage: dict[str, dict[int, float]] = field(default_factory=dict)
    errors: list[np.ndarray] = field(default_factory=list)
    """One array per horizon step (all windows and series pooled)."""


def backtest(
    series: list[Series],
    windows: dict[str, int],
    h: int,
    season: int,
    columns: list[str],
    levels: tuple[int, ...],
) -> GbmBacktest:
    """``windows[sid]`` origins per series (as the statistical backtest counts them; series
    absent are not scored): a model is trained on every series cut at the ``w``-th origin
    from the end and forecasts the block after it."""
    codes = {s.id: n for n, s in enumerate(series)}
    most = max(windows.values(), default=0)
    per_window: list[dict[str, np.ndarray]] = []
    scores: dict[str, list[float]] = {sid: [] for sid in windows}
    for w in range(most, 0, -1):
        cuts = [max(0, len(s.values) - w * h) for s in series]
        booster = train(*training_rows(series, cuts, codes, columns), columns)
        scored = [
            (s, cut) for s, cut in zip(series, cuts, strict=True) if windows.get(s.id, 0) >= w
        ]
        scales = np.array([scale_of(s.values[:cut]) for s, cut in scored])
        tails = np.stack(
            [tail(s.values[:cut], sc) for (s, cut), sc in zip(scored, scales, strict=True)]
        )
        ends = np.array([s.start + (cut - 1) * s.step for s, cut in scored])
        future = np.stack([exogenous_table(s, columns, cut, cut + h) for s, cut in scored])
        code = np.array([codes[s.id] for s, _ in scored], dtype=float)
        predicted = recursive(booster, tails, ends, series[0].step, code, future)
        found = {}
        for i, (s, cut) in enumerate(scored):
            mean = predicted[i] * scales[i]
            error = np.abs(mean - s.values[cut : cut + h])
            scores[s.id].append(float(error.mean() / naive_scale(s.values[:cut], season)))
            found[s.id] = error / scales[i]
        per_window.append(found)
    result = GbmBacktest()
    result.mase = {sid: float(np.mean(v)) for sid, v in scores.items() if v}
    result.errors = [
        np.concatenate([[e[k] for e in found.values()] for found in per_window]) for k in range(h)
    ]
    inside: dict[str, dict[int, list[float]]] = {sid: {lv: [] for lv in levels} for sid in windows}
    for n, found in enumerate(per_window):
        others = [f for m, f in enumerate(per_window) if m != n] or [found]
        pooled = [np.concatenate([[e[k] for e in f.values()] for f in others]) for k in range(h)]
        for level in levels:
            width = np.array([conformal(pooled[k], level) for k in range(h)])
            for sid, error in found.items():
                inside[sid][level].append(float(np.mean(error <= width)))
    result.coverage = {
        sid: {lv: float(np.mean(v)) for lv, v in by.items()}
        for sid, by in inside.items()
        if by[levels[0]]
    }
    return result


@dataclass
class Known:
    """A training series as the GBM serves it."""

    code: int
    start: float
    values: np.ndarray
    scale: float


@dataclass
class Prepared:
    """A forecast request ready for the recursion: the series' last ``CONTEXT`` values
    (scaled), the time of the last one, its code and scale, and the exogenous values and
    times of the horizon."""

    tail: np.ndarray
    end: float
    code: float
    scale: float
    exogenous: np.ndarray
    times: list[float]
    levels: list[int]
    used: int


@dataclass
class GbmForecaster:
    """The trained global model, each training series' values and the backtest errors per
    horizon step (sorted) that its intervals come from; see the module note."""

    booster: Any
    series: dict[str, Known]
    step: float
    season: int
    columns: list[str]
    errors: list[np.ndarray]
    nonnegative: bool
    params: dict[str, Any]
    default_model: str = METHOD

    def forecast(self, *request: Any) -> dict[str, Any]:
        """One forecast (``prepare``'s arguments), as the statistical ``Forecaster`` has."""
        return self.finish([self.prepare(*request)])[0]

    def prepare(
        self,
        series_id: str | None,
        history: list[tuple[float, float]] | None,
        observations: list[tuple[float, float]],
        h: int,
        levels: list[int],
        future: dict[str, list[float]] | None = None,
    ) -> Prepared:
        """One request's inputs to the recursion (a bad one raises here, alone): ``h``
        points after the series' last one (its stored ``observations`` appended), or after a
        ``history``; ``future`` gives the exogenous columns at those points
        (``{"timestamp": [...], column: [...]}``)."""
        if series_id is not None:
            known = self.series[series_id]
            y, start, code, scale = known.values, known.start, float(known.code), known.scale
            late = [(t, v) for t, v in observations if t > start + (len(y) - 1) * self.step]
            if late:
                y = extended(start, y, self.step, late)
        else:
            points = [(t, v, i + 1) for i, (t, v) in enumerate(history or [])]
            made = regular("history", points, self.step)
            y, start, code, scale = made.values, made.start, np.nan, scale_of(made.values)
        end = start + (len(y) - 1) * self.step
        times = [end + (k + 1) * self.step for k in range(h)]
        exogenous = self._future(future or {}, times)
        return Prepared(tail(y, scale), end, code, scale, exogenous, times, levels, len(y))

    def finish(self, batch: list[Prepared]) -> list[dict[str, Any]]:
        """The forecasts of prepared requests, all rows stepped together (one prediction
        per horizon step for the whole batch; a shorter horizon ignores the later steps)."""
        longest = max(len(p.times) for p in batch)
        future = np.full((len(batch), longest, len(self.columns)), np.nan)
        for i, p in enumerate(batch):
            future[i, : len(p.times)] = p.exogenous
        scaled = recursive(
            self.booster,
            np.stack([p.tail for p in batch]),
            np.array([p.end for p in batch]),
            self.step,
            np.array([p.code for p in batch]),
            future,
        )
        return [self._answer(p, scaled[i, : len(p.times)]) for i, p in enumerate(batch)]

    def _answer(self, p: Prepared, scaled: np.ndarray) -> dict[str, Any]:
        mean, last = scaled * p.scale, len(self.errors) - 1
        intervals = {}
        for level in p.levels:
            quantiles = [
                conformal(self.errors[min(k, last)], level, True) for k in range(len(mean))
            ]
            width = np.array(quantiles) * p.scale
            lo, hi = mean - width, mean + width
            if self.nonnegative:
                lo = np.maximum(lo, 0.0)
            intervals[str(level)] = {"lo": lo.tolist(), "hi": hi.tolist()}
        if self.nonnegative:
            mean = np.maximum(mean, 0.0)
        return {
            "timestamps": p.times,
            "mean": mean.tolist(),
            "intervals": intervals,
            "model": METHOD,
            "observations_used": p.used,
        }

    def _future(self, future: dict[str, list[float]], times: list[float]) -> np.ndarray:
        """The exogenous values at ``times`` from a request's ``future`` block; a column
        without a value at one of them is a 400 naming it."""
        table = np.empty((len(times), len(self.columns)))
        if not self.columns:
            return table
        at = {round(t / self.step): n for n, t in enumerate(future.get("timestamp") or [])}
        for j, column in enumerate(self.columns):
            given = future.get(column)
            for k, t in enumerate(times):
                n = at.get(round(t / self.step))
                if given is None or n is None or n >= len(given):
                    raise InvalidInput(
                        f"this model was trained with the exogenous column {column!r}: give "
                        f"its value at every forecast time in future (none for {t:.0f})",
                        param=f"future.{column}",
                    )
                table[k, j] = given[n]
        return table


def fit_gbm(
    series: list[Series],
    columns: list[str],
    errors: list[np.ndarray],
    season: int,
    params: dict[str, Any],
) -> GbmForecaster:
    """The global model trained on every series' full length."""
    codes = {s.id: n for n, s in enumerate(series)}
    cuts = [len(s.values) for s in series]
    booster = train(*training_rows(series, cuts, codes, columns), columns)
    known = {s.id: Known(codes[s.id], s.start, s.values, scale_of(s.values)) for s in series}
    nonnegative = all(float(s.values.min()) >= 0 for s in series)
    return GbmForecaster(
        booster,
        known,
        series[0].step,
        season,
        columns,
        [np.sort(e) for e in errors],
        nonnegative,
        params,
    )
