"""Candidate models, per-series choice by rolling-origin cross-validation, the evaluation
(MASE and interval coverage against seasonal naive) and the served ``Forecaster``.

Each series gets the candidate with the lowest mean absolute error over the backtest windows
(the horizon's length each, origins rolling forward). MASE scales a series' error by the
in-sample mean absolute error of the seasonal naive forecast, so series of different sizes
average fairly; coverage is the share of held-out points inside each interval.

New observations never refit: ``forward`` re-applies the fitted model (its parameters as
estimated) to the extended series, which updates its state (level, trend, errors).
"""

from __future__ import annotations

import pickle
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aimass.scenarios.forecast.data import Series, default_season

CANDIDATES = ("AutoETS", "AutoARIMA", "MSTL", "SeasonalNaive")
BASELINE = "SeasonalNaive"
LEVELS = (80, 95)
DEFAULTS: dict[str, Any] = {
    "models": list(CANDIDATES),
    "horizon": 14,
    "windows": 2,
    "season_length": None,
}
ARTIFACT = "forecaster.pkl"


def hyperparameters(given: dict[str, Any]) -> dict[str, Any]:
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown hyperparameter(s): {', '.join(sorted(unknown))}")
    merged = {**DEFAULTS, **given}
    models = merged["models"]
    if not isinstance(models, list) or not models or set(models) - set(CANDIDATES):
        raise ValueError(f"models must be a non-empty list of {', '.join(CANDIDATES)}")
    for name, top in (("horizon", 1000), ("windows", 20)):
        if not isinstance(merged[name], int) or not 1 <= merged[name] <= top:
            raise ValueError(f"{name} must be an integer from 1 to {top}")
    season = merged["season_length"]
    if season is not None and (not isinstance(season, int) or not 1 <= season <= 1000):
        raise ValueError("season_length must be an integer from 1 to 1000")
    return merged


def make(name: str, season: int) -> Any:
    """An unfitted statsforecast model (MSTL needs a season > 1: it falls back to AutoETS)."""
    from statsforecast.models import MSTL, AutoARIMA, AutoETS, SeasonalNaive

    if name == "AutoETS":
        return AutoETS(season_length=season)
    if name == "AutoARIMA":
        return AutoARIMA(season_length=season)
    if name == "MSTL" and season > 1:
        return MSTL(season_length=season, trend_forecaster=AutoETS(model="ZZN"))
    if name == "MSTL":
        return AutoETS(season_length=1)
    return SeasonalNaive(season_length=season)


def _predict(model: Any, y: np.ndarray, h: int, levels: tuple[int, ...]) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(y).predict(h, level=list(levels))


def _scale(y: np.ndarray, season: int) -> float:
    """In-sample MAE of the seasonal naive forecast (naive when too short): MASE's unit."""
    lag = season if len(y) > season else 1
    diffs = np.abs(y[lag:] - y[:-lag])
    scale = float(diffs.mean()) if len(diffs) else 0.0
    return scale if scale > 0 else 1.0


@dataclass
class Backtest:
    """Each candidate's errors on one series' rolling-origin windows."""

    mae: dict[str, float] = field(default_factory=dict)
    mase: dict[str, float] = field(default_factory=dict)
    coverage: dict[str, dict[int, float]] = field(default_factory=dict)


def backtest(y: np.ndarray, names: list[str], season: int, h: int, windows: int) -> Backtest:
    """Fit every candidate at each origin (the last ``windows`` blocks of ``h`` points held
    out in turn) and measure it on the block after the origin."""
    result = Backtest()
    windows = max(1, min(windows, (len(y) - max(2 * season, 4)) // h))
    for name in dict.fromkeys([*names, BASELINE]):
        errors, scaled, inside = [], [], {level: [] for level in LEVELS}
        for w in range(windows, 0, -1):
            cut = len(y) - w * h
            train, test = y[:cut], y[cut : cut + h]
            out = _predict(make(name, season), train, h, LEVELS)
            error = np.abs(out["mean"] - test)
            errors.append(error.mean())
            scaled.append(error.mean() / _scale(train, season))
            for level in LEVELS:
                lo, hi = out[f"lo-{level}"], out[f"hi-{level}"]
                inside[level].append(float(np.mean((test >= lo) & (test <= hi))))
        result.mae[name] = float(np.mean(errors))
        result.mase[name] = float(np.mean(scaled))
        result.coverage[name] = {level: float(np.mean(v)) for level, v in inside.items()}
    return result


@dataclass
class Fitted:
    """One series as served: its chosen model fitted on all its values."""

    model: Any
    name: str
    start: float
    values: np.ndarray


@dataclass
class Forecaster:
    """Every series' fitted model; see the module note."""

    series: dict[str, Fitted]
    step: float
    season: int
    default_model: str
    params: dict[str, Any]

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ARTIFACT, "wb") as handle:
            pickle.dump(self, handle, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, folder: Path) -> Forecaster:
        """Read an artifact this server's training job wrote (a pickle: only ever load one
        from the server's own home, as the runtime does)."""
        with open(folder / ARTIFACT, "rb") as handle:
            loaded = pickle.load(handle)
        if not isinstance(loaded, cls):
            raise TypeError(f"{folder / ARTIFACT} is not a forecaster artifact")
        return loaded

    def forecast(
        self,
        series_id: str | None,
        history: list[tuple[float, float]] | None,
        observations: list[tuple[float, float]],
        h: int,
        levels: list[int],
    ) -> dict[str, Any]:
        """``h`` points after the series' last one with ``levels`` % intervals.

        A known series with ``observations`` after its end is extended (gaps interpolated)
        and its fitted model re-applied (``forward``); a ``history`` gets the model chosen
        most often in training, fitted on it."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if series_id is not None:
                fitted = self.series[series_id]
                y, start = fitted.values, fitted.start
                late = [(t, v) for t, v in observations if t > start + (len(y) - 1) * self.step]
                if late:
                    y = self._extended(fitted, late)
                    out = fitted.model.forward(y=y, h=h, level=levels)
                else:
                    out = fitted.model.predict(h, level=levels)
                name = fitted.name
            else:
                from aimass.scenarios.forecast.data import regular

                points = [(t, v, i + 1) for i, (t, v) in enumerate(history or [])]
                regular_history = regular("history", points, self.step)
                y, start = regular_history.values, regular_history.start
                name = self.default_model
                out = _predict(make(name, self.season), y, h, tuple(levels))
        end = start + (len(y) - 1) * self.step
        times = [end + (i + 1) * self.step for i in range(h)]
        return {
            "timestamps": times,
            "mean": [float(x) for x in out["mean"]],
            "intervals": {
                str(level): {
                    "lo": [float(x) for x in out[f"lo-{level}"]],
                    "hi": [float(x) for x in out[f"hi-{level}"]],
                }
                for level in levels
            },
            "model": name,
            "observations_used": len(y),
        }

    def _extended(self, fitted: Fitted, late: list[tuple[float, float]]) -> np.ndarray:
        from aimass.scenarios.forecast.data import regular

        points = [(fitted.start + i * self.step, float(v), 0) for i, v in
                  enumerate(fitted.values)]  # fmt: skip
        last = {}
        for t, v in late:
            last[fitted.start + round((t - fitted.start) / self.step) * self.step] = v
        points += [(t, v, 0) for t, v in last.items()]
        return regular("series", points, self.step).values


def fit(
    series: list[Series], params: dict[str, Any], report: Any = None
) -> tuple[Forecaster, dict]:
    """Choose and fit a model per series; returns the forecaster and the evaluation
    (``metrics`` of the chosen models, ``baseline`` of seasonal naive, per-model counts)."""
    step = series[0].step
    season = params["season_length"] or default_season(step)
    h = params["horizon"]
    chosen: dict[str, Fitted] = {}
    mase, base_mase = [], []
    cover = {level: [] for level in LEVELS}
    base_cover = {level: [] for level in LEVELS}
    for n, s in enumerate(series):
        y = s.values
        if len(y) < h + max(2 * season, 4):
            name = BASELINE
            result = None
        else:
            result = backtest(y, params["models"], season, h, params["windows"])
            name = min(params["models"], key=lambda m: result.mae[m])
            mase.append(result.mase[name])
            base_mase.append(result.mase[BASELINE])
            for level in LEVELS:
                cover[level].append(result.coverage[name][level])
                base_cover[level].append(result.coverage[BASELINE][level])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = make(name, season).fit(y)
        chosen[s.id] = Fitted(model, name, s.start, y)
        if report is not None:
            report(n + 1, len(series))
    if not mase:
        raise ValueError(
            f"no series is long enough to backtest: each needs at least horizon ({h}) + "
            f"{max(2 * season, 4)} points"
        )
    counts = Counter(f.name for f in chosen.values())
    forecaster = Forecaster(chosen, step, season, counts.most_common(1)[0][0], params)
    evaluation = {
        "metrics": {"mase": float(np.mean(mase)),
                    **{f"coverage_{lv}": float(np.mean(cover[lv])) for lv in LEVELS}},
        "baseline": {"mase": float(np.mean(base_mase)),
                     **{f"coverage_{lv}": float(np.mean(base_cover[lv])) for lv in LEVELS}},
        "chosen": dict(counts), "series": len(series), "backtested": len(mase),
        "season_length": season, "step_s": step,
    }  # fmt: skip
    return forecaster, evaluation


def evaluate_serving(
    forecaster: Forecaster, series: list[Series], h: int, windows: int
) -> dict | None:
    """An earlier forecaster's MASE on these series' backtest (each series with the model it
    chose, refit at each origin; series it never saw use its most frequent choice)."""
    mase, cover = [], {level: [] for level in LEVELS}
    season = forecaster.season
    for s in series:
        y = s.values
        if len(y) < h + max(2 * season, 4):
            continue
        known = forecaster.series.get(s.id)
        name = known.name if known is not None else forecaster.default_model
        result = backtest(y, [name], season, h, windows)
        mase.append(result.mase[name])
        for level in LEVELS:
            cover[level].append(result.coverage[name][level])
    if not mase:
        return None
    return {"mase": float(np.mean(mase)),
            **{f"coverage_{lv}": float(np.mean(v)) for lv, v in cover.items()}}  # fmt: skip
