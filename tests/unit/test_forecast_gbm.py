"""The gradient-boosting forecaster's features, intervals and the family choice, in process on
generated series: a feature at time t reads only values before t, the conformal intervals
cover held-out points at about their level, and ``model: auto`` keeps the family with the
lower backtest MASE."""

from __future__ import annotations

import numpy as np
import pytest

from aimass.errors import InvalidInput
from aimass.scenarios.forecast import gbm
from aimass.scenarios.forecast.data import DAY, Series, read_series
from aimass.scenarios.forecast.model import LEVELS, fit, hyperparameters, origins
from examples.data.make_forecast import generate

H = 7


@pytest.fixture(scope="module")
def demand(tmp_path_factory):
    path = generate("demand", 30, 150, 3, tmp_path_factory.mktemp("demand"))
    return read_series(path)


def test_a_feature_at_time_t_reads_only_values_before_t():
    rng = np.random.default_rng(0)
    y = rng.gamma(2.0, 10.0, 90)
    promo = (rng.random(90) < 0.2).astype(float)
    s = Series("a", 1_735_689_600.0, DAY, y, exogenous={"promotion": promo})
    names = gbm.feature_names(["promotion"])
    x, target = gbm.training_rows([s], [90], {"a": 0}, ["promotion"])
    scale = gbm.scale_of(y)
    first = gbm.MIN_PAST
    assert np.allclose(target * scale, y[first:])
    for lag in gbm.LAGS:
        column = x[:, names.index(f"lag_{lag}")] * scale
        t = np.arange(first, 90)
        expected = np.where(t - lag >= 0, y[np.maximum(t - lag, 0)], np.nan)
        assert np.allclose(column, expected, equal_nan=True)
    assert np.array_equal(x[:, names.index("x_promotion")], promo[first:])
    for cut in (20, 45, 80):
        later = y.copy()
        later[cut:] = rng.permutation(y[cut:])  # same scale (to rounding), other values
        moved = Series("a", s.start, DAY, later, exogenous=s.exogenous)
        x2, _ = gbm.training_rows([moved], [90], {"a": 0}, ["promotion"])
        upto = cut - first + 1  # rows of targets t <= cut
        assert np.allclose(x[:upto], x2[:upto], rtol=1e-12, atol=0, equal_nan=True)
        assert not np.allclose(x[upto:], x2[upto:], rtol=1e-6, equal_nan=True)


def test_conformal_intervals_cover_held_out_points_at_about_their_level(demand):
    series, columns = demand
    train = [
        Series(
            s.id,
            s.start,
            s.step,
            s.values[:-H],
            exogenous={c: v[:-H] for c, v in s.exogenous.items()},
        )
        for s in series
    ]
    windows = {s.id: origins(len(s.values), 7, H, 3) for s in train}
    tested = gbm.backtest(train, windows, H, 7, columns, LEVELS)
    model = gbm.fit_gbm(train, columns, tested.errors, 7, {})
    inside = {level: [] for level in LEVELS}
    for s in series:
        start = len(s.values) - H
        times = [s.start + (start + k) * s.step for k in range(H)]
        future = {"timestamp": times, "promotion": list(s.exogenous["promotion"][start:])}
        out = model.forecast(s.id, None, [], H, list(LEVELS), future)
        assert out["timestamps"] == times
        for level in LEVELS:
            band = out["intervals"][str(level)]
            held = s.values[start:]
            inside[level] += list((held >= band["lo"]) & (held <= band["hi"]))
    assert 0.68 <= np.mean(inside[80]) <= 0.95, np.mean(inside[80])
    assert np.mean(inside[95]) >= 0.85, np.mean(inside[95])
    for level in LEVELS:
        assert 0.6 <= np.mean([c[level] for c in tested.coverage.values()]) <= 1.0


def test_a_missing_future_value_names_the_column(demand):
    series, columns = demand
    model = gbm.fit_gbm(series, columns, [np.ones(5)] * H, 7, {})
    s = series[0]
    end = s.start + (len(s.values) - 1) * s.step
    times = [end + (k + 1) * s.step for k in range(H)]
    with pytest.raises(InvalidInput, match="promotion") as caught:
        model.forecast(s.id, None, [], H, [80], {"timestamp": times[:-1], "promotion": [0] * 6})
    assert caught.value.param == "future.promotion"
    later = model.forecast(
        s.id,
        None,
        [(end + s.step, 500.0)],
        H,
        [80],
        {"timestamp": [t + s.step for t in times], "promotion": [0] * H},
    )
    assert later["timestamps"][0] == times[1] and later["observations_used"] == len(s.values) + 1


def test_auto_keeps_the_family_with_the_lower_backtest_mase(demand):
    series, columns = demand
    params = hyperparameters({"models": ["SeasonalNaive"], "horizon": H})
    forecaster, evaluation = fit(series, params, columns)
    families = evaluation["families"]
    assert set(families) == {"seasonal_naive", "statistical", "gbm"}
    winner = min(("statistical", "gbm"), key=lambda f: families[f]["mase"])
    assert evaluation["family"] == winner and evaluation["metrics"] == families[winner]
    assert f"{families['gbm']['mase']:.4f}" in evaluation["reason"]
    assert winner == "gbm" and isinstance(forecaster, gbm.GbmForecaster)
    with pytest.raises(ValueError, match="model must be one of"):
        hyperparameters({"model": "neural"})
