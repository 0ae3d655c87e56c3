"""Candidate models, their choice by rolling-origin backtest, the evaluation (MASE and interval
coverage against seasonal naive) and the served forecasters.

Two families are backtested on the same rolling origins (the last ``windows`` blocks of
``horizon`` points of each series held out in turn):

* statistical (statsforecast): each series gets the candidate with the lowest mean absolute
  error over its windows;
* gbm: one LightGBM model over all series on lag, calendar and exogenous features
  (``gbm.py``), trained again at each origin.

With ``model: auto`` the family with the lower mean MASE over the backtested series serves
the whole dataset; ``statistical`` or ``gbm`` forces one. MASE scales a series' error by the
in-sample mean absolute error of the seasonal naive forecast, so series of different sizes
average fairly; coverage is the share of held-out points inside each interval. The
statistical figure is the chosen candidates' errors on the windows they were chosen on, so it
is slightly optimistic; the GBM's has no such choice.

New observations never refit: a statistical model's ``forward`` re-applies its fitted
parameters to the extended series (updating its state); the GBM reads its lags from it.
"""

from __future__ import annotations

import pickle
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aimass.scenarios.forecast import gbm
from aimass.scenarios.forecast.data import Series, default_season, extended, naive_scale

CANDIDATES = ("AutoETS", "AutoARIMA", "MSTL", "SeasonalNaive")
FAMILIES = ("auto", "statistical", "gbm")
BASELINE = "SeasonalNaive"
LEVELS = (80, 95)
DEFAULTS: dict[str, Any] = {
    "model": "auto",
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
    if merged["model"] not in FAMILIES:
        raise ValueError(f"model must be one of {', '.join(FAMILIES)}")
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


def minimum_length(season: int, h: int) -> int:
    """Points a series needs to be backtested."""
    return h + max(2 * season, 4)


def origins(length: int, season: int, h: int, windows: int) -> int:
    """Backtest windows of a series of ``length`` points (fewer when it is short)."""
    return max(1, min(windows, (length - max(2 * season, 4)) // h))


@dataclass
class Backtest:
    """Each statistical candidate's errors on one series' rolling-origin windows."""

    windows: int = 0
    mae: dict[str, float] = field(default_factory=dict)
    mase: dict[str, float] = field(default_factory=dict)
    coverage: dict[str, dict[int, float]] = field(default_factory=dict)


def backtest(y: np.ndarray, names: list[str], season: int, h: int, windows: int) -> Backtest:
    """Fit every candidate (and seasonal naive) at each origin (the last ``windows`` blocks
    of ``h`` points held out in turn) and measure it on the block after the origin."""
    result = Backtest(windows=origins(len(y), season, h, windows))
    for name in dict.fromkeys([*names, BASELINE]):
        errors, scaled, inside = [], [], {level: [] for level in LEVELS}
        for w in range(result.windows, 0, -1):
            cut = len(y) - w * h
            train, test = y[:cut], y[cut : cut + h]
            out = _predict(make(name, season), train, h, LEVELS)
            error = np.abs(out["mean"] - test)
            errors.append(error.mean())
            scaled.append(error.mean() / naive_scale(train, season))
            for level in LEVELS:
                lo, hi = out[f"lo-{level}"], out[f"hi-{level}"]
                inside[level].append(float(np.mean((test >= lo) & (test <= hi))))
        result.mae[name] = float(np.mean(errors))
        result.mase[name] = float(np.mean(scaled))
        result.coverage[name] = {level: float(np.mean(v)) for level, v in inside.items()}
    return result


def summary(mase: list[float], coverage: list[dict[int, float]]) -> dict[str, float]:
    """Mean MASE and coverage over series (the evaluation's shape)."""
    covered = {f"coverage_{lv}": float(np.mean([c[lv] for c in coverage])) for lv in LEVELS}
    return {"mase": float(np.mean(mase)), **covered}


@dataclass
class Fitted:
    """One series as served: its chosen model fitted on all its values."""

    model: Any
    name: str
    start: float
    values: np.ndarray


@dataclass
class Forecaster:
    """Every series' fitted statistical model; see the module note."""

    series: dict[str, Fitted]
    step: float
    season: int
    default_model: str
    params: dict[str, Any]

    def forecast(
        self,
        series_id: str | None,
        history: list[tuple[float, float]] | None,
        observations: list[tuple[float, float]],
        h: int,
        levels: list[int],
        future: dict[str, list[float]] | None = None,
    ) -> dict[str, Any]:
        """``h`` points after the series' last one with ``levels`` % intervals (``future``
        is not read: the statistical models use no exogenous values).

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
                    y = extended(start, y, self.step, late)
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


AnyForecaster = Forecaster | gbm.GbmForecaster


def save(forecaster: AnyForecaster, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ARTIFACT, "wb") as handle:
        pickle.dump(forecaster, handle, protocol=pickle.HIGHEST_PROTOCOL)


def load(folder: Path) -> AnyForecaster:
    """Read an artifact this server's training job wrote (a pickle: only ever load one from
    the server's own home, as the runtime does)."""
    with open(folder / ARTIFACT, "rb") as handle:
        loaded = pickle.load(handle)
    if not isinstance(loaded, Forecaster | gbm.GbmForecaster):
        raise TypeError(f"{folder / ARTIFACT} is not a forecaster artifact")
    return loaded


def fit(
    series: list[Series], params: dict[str, Any], columns: list[str], report: Any = None
) -> tuple[AnyForecaster, dict]:
    """Backtest the families ``params["model"]`` asks for, keep the better (or the forced
    one) and fit it on all the data; returns the forecaster and the evaluation (``metrics``
    of the kept family, ``baseline`` of seasonal naive, ``families`` with each one's figures,
    ``family`` and ``reason``)."""
    step = series[0].step
    season = params["season_length"] or default_season(step)
    h, family = params["horizon"], params["model"]
    names = [] if family == "gbm" else params["models"]
    results: dict[str, Backtest] = {}
    for n, s in enumerate(series):
        if len(s.values) >= minimum_length(season, h):
            results[s.id] = backtest(s.values, names, season, h, params["windows"])
        if report is not None:
            report(n + 1, len(series))
    if not results:
        raise ValueError(
            f"no series is long enough to backtest: each needs at least horizon ({h}) + "
            f"{max(2 * season, 4)} points"
        )
    picks = {sid: min(names, key=lambda m, r=r: r.mae[m]) for sid, r in results.items()
             if names}  # fmt: skip
    tests = list(results.values())
    families = {"seasonal_naive": summary([r.mase[BASELINE] for r in tests],
                                          [r.coverage[BASELINE] for r in tests])}  # fmt: skip
    if names:
        pairs = [(r, picks[sid]) for sid, r in results.items()]
        families["statistical"] = summary([r.mase[m] for r, m in pairs],
                                          [r.coverage[m] for r, m in pairs])  # fmt: skip
    tested = None
    if family != "statistical":
        windows = {sid: r.windows for sid, r in results.items()}
        tested = gbm.backtest(series, windows, h, season, columns, LEVELS)
        families["gbm"] = summary(list(tested.mase.values()), list(tested.coverage.values()))
    if family == "auto":
        stat, boosted = families["statistical"]["mase"], families["gbm"]["mase"]
        winner = "gbm" if boosted < stat else "statistical"
        reason = (f"{winner} kept: backtest MASE {min(stat, boosted):.4f} (gbm "
                  f"{boosted:.4f}, statistical {stat:.4f}, seasonal naive "
                  f"{families['seasonal_naive']['mase']:.4f})")  # fmt: skip
    else:
        winner = family
        reason = f"{winner} kept: forced by the model hyperparameter"
    forecaster: AnyForecaster
    if winner == "gbm":
        assert tested is not None
        forecaster = gbm.fit_gbm(series, columns, tested.errors, season, params)
        counts = {gbm.METHOD: len(series)}
    else:
        chosen = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for s in series:
                name = picks.get(s.id, BASELINE)
                chosen[s.id] = Fitted(make(name, season).fit(s.values), name, s.start, s.values)
        counts = dict(Counter(f.name for f in chosen.values()))
        usual = Counter(f.name for f in chosen.values()).most_common(1)[0][0]
        forecaster = Forecaster(chosen, step, season, usual, params)
    evaluation = {
        "metrics": families[winner], "baseline": families["seasonal_naive"],
        "families": families, "family": winner, "reason": reason, "chosen": counts,
        "exogenous": columns if winner == "gbm" else [], "series": len(series),
        "backtested": len(results), "season_length": season, "step_s": step,
    }  # fmt: skip
    return forecaster, evaluation


def evaluate_serving(
    forecaster: AnyForecaster, series: list[Series], columns: list[str], h: int, windows: int
) -> dict | None:
    """An earlier forecaster's MASE on these series' backtest: each series with the model it
    chose (series it never saw use its most frequent choice), or the GBM trained again at each
    origin with the same features (None if this file lacks one of its exogenous columns)."""
    season = forecaster.season
    long_enough = [s for s in series if len(s.values) >= minimum_length(season, h)]
    if not long_enough:
        return None
    if isinstance(forecaster, gbm.GbmForecaster):
        if set(forecaster.columns) - set(columns):
            return None
        counts = {s.id: origins(len(s.values), season, h, windows) for s in long_enough}
        tested = gbm.backtest(series, counts, h, season, forecaster.columns, LEVELS)
        return summary(list(tested.mase.values()), list(tested.coverage.values()))
    mase, cover = [], []
    for s in long_enough:
        known = forecaster.series.get(s.id)
        name = known.name if known is not None else forecaster.default_model
        result = backtest(s.values, [name], season, h, windows)
        mase.append(result.mase[name])
        cover.append(result.coverage[name])
    return summary(mase, cover)
