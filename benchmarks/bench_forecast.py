"""Forecasting benchmarks, in one run each, baselines beside:

``--what quality``: MASE and 80/95 % interval coverage on the training job's rolling-origin
backtest (``aimass.scenarios.forecast.model.fit``, in process) of the statistical models
(one per series, chosen by backtest among ``--models``), the global LightGBM model (with and
without the generated exogenous column) and seasonal naive, on generated demand
(``--demand-series``) and vehicle mileage (``--mileage-series``), each ``--days`` long; the
CPU seconds each family's backtest took.

``--what speed``: forecasts/s for ``--series`` generated demand series, served by AI Mass
(runtime ``forecast``, one replica, ``--clients`` HTTP clients posting
``{model, series_id, horizon, level[, future]}`` for every series once) vs the same artifact
called in process in a loop, for two artifacts: AutoETS (one form, ANA) per series and the
global LightGBM model (given the promotion over the horizon).

Tables and the commands are appended to benchmarks/RESULTS.md.

    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_forecast.py --what quality
    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_forecast.py --what speed
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import orjson
from common import (
    append_section,
    closed_loop,
    command,
    machine_note,
    pcts,
    run_async,
    serve,
    stamp,
    table,
)
from statsforecast.models import AutoETS

from aimass.scenarios.forecast import gbm
from aimass.scenarios.forecast.data import read_series
from aimass.scenarios.forecast.model import (
    LEVELS,
    Fitted,
    Forecaster,
    fit,
    hyperparameters,
    origins,
    save,
)
from examples.data.make_forecast import generate

MODEL = "bench-demand"
FLAG = {"demand": "promotion", "mileage": "holiday"}


def families(kind: str, count: int, days: int, horizon: int, models: list[str], tmp: Path,
             exogenous: bool) -> tuple[dict[str, Any], float]:  # fmt: skip
    """The evaluation of ``model: auto`` (or ``gbm`` without the exogenous column) and the
    CPU seconds it took."""
    path = generate(kind, count, days, 11, tmp / f"{kind}-{count}-{exogenous}", exogenous)
    series, columns = read_series(path)
    mode = "auto" if exogenous else "gbm"
    params = hyperparameters({"model": mode, "models": models, "horizon": horizon})
    start = time.process_time()
    _, evaluation = fit(series, params, columns)
    return evaluation, time.process_time() - start


def quality(args: argparse.Namespace, tmp: Path) -> list[str]:
    rows = []
    for kind, count in (("demand", args.demand_series), ("mileage", args.mileage_series)):
        if count == 0:
            continue
        full, cpu = families(kind, count, args.days, args.horizon, args.models, tmp, True)
        bare, bare_cpu = families(kind, count, args.days, args.horizon, args.models, tmp, False)
        print(kind, full["reason"], f"{cpu:.0f} s CPU", flush=True)
        named = (("statistical", "statistical", full), ("gbm", f"gbm + {FLAG[kind]}", full),
                 ("gbm", "gbm, no exogenous", bare),
                 ("seasonal_naive", "seasonal naive", full))  # fmt: skip
        for family, label, evaluation in named:
            figures = evaluation["families"][family]
            won = "**kept**" if evaluation is full and full["family"] == family else ""
            rows.append([f"{kind} ({count} series)", label, figures["mase"],
                         figures["coverage_80"], figures["coverage_95"], won])  # fmt: skip
        rows.append([f"{kind} ({count} series)", "CPU s (both families, auto)", f"{cpu:.0f}",
                     "", "", f"gbm alone: {bare_cpu:.0f}"])  # fmt: skip
    flags = ["--what", "--demand-series", "--mileage-series", "--days", "--horizon", "--models"]
    return [
        f"## Forecast quality: statistical vs LightGBM vs seasonal naive, {args.demand_series} "
        f"demand and {args.mileage_series} mileage series ({stamp()})",
        "",
        f"`flock /tmp/bench.lock {command('bench_forecast.py', args, flags)}` — the training "
        f"job's rolling-origin backtest (2 windows of {args.horizon} days at the end of each "
        f"{args.days}-day series, the same origins for every family), in process, one thread; "
        f"statistical = per series the best of {', '.join(args.models)}; gbm = one LightGBM "
        f"over all series (lags 1..7, 14, 28, means 7/28, day of week, month, series id, the "
        f"exogenous column); {machine_note()}.",
        "",
        *table(["data", "family", "MASE", "coverage 80", "coverage 95", ""], rows),
    ]


def statistical(path: Path) -> Forecaster:
    """AutoETS restricted to one form (additive error and season, no trend: what it picks on
    most of these series) so fitting 1,000 series fits in the benchmark's time on a shared
    machine; serving cost does not depend on how the form was found."""
    series, _ = read_series(path)
    chosen = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in series:
            model = AutoETS(season_length=7, model="ANA").fit(s.values)
            chosen[s.id] = Fitted(model, "AutoETS", s.start, s.values)
    return Forecaster(chosen, series[0].step, 7, "AutoETS", {"models": ["AutoETS"]})


def boosted(path: Path, horizon: int) -> gbm.GbmForecaster:
    """The global model as the training job makes it (backtest errors from 2 windows)."""
    series, columns = read_series(path)
    windows = {s.id: origins(len(s.values), 7, horizon, 2) for s in series}
    tested = gbm.backtest(series, windows, horizon, 7, columns, LEVELS)
    return gbm.fit_gbm(series, columns, tested.errors, 7, {})


def bodies(forecaster: Any, horizon: int) -> dict[str, dict]:
    """One request per series; the GBM's carry the promotion over the horizon."""
    out = {}
    for sid, known in forecaster.series.items():
        body: dict[str, Any] = {"series_id": sid, "horizon": horizon, "level": list(LEVELS)}
        if isinstance(forecaster, gbm.GbmForecaster):
            end = known.start + (len(known.values) - 1) * forecaster.step
            times = [end + (k + 1) * forecaster.step for k in range(horizon)]
            body["future"] = {"timestamp": times, "promotion": [float(k == 3) for k in
                                                                 range(horizon)]}  # fmt: skip
        out[sid] = body
    return out


def in_process(forecaster: Any, requests: dict[str, dict]) -> tuple[float, list[float]]:
    latencies, start = [], time.perf_counter()
    for sid, body in requests.items():
        t = time.perf_counter()
        forecaster.forecast(sid, None, [], body["horizon"], body["level"], body.get("future"))
        latencies.append(time.perf_counter() - t)
    return len(latencies) / (time.perf_counter() - start), latencies


def served(server: Any, model: str, requests: list[dict], clients: int):
    """Every request of ``requests`` sent once over HTTP by ``clients`` keep-alive clients."""
    bodies = (orjson.dumps({"model": model, **r}) for r in requests)
    return run_async(closed_loop(server, "/v1/forecasts", bodies, clients))


def speed(args: argparse.Namespace, tmp: Path) -> list[str]:
    path = generate("demand", args.series, args.days, 11, tmp / "data")
    artifacts = {}
    for label, make in (("AutoETS", lambda: statistical(path)),
                        ("LightGBM", lambda: boosted(path, args.horizon))):  # fmt: skip
        t = time.process_time()
        artifacts[label] = make()
        print(f"{label} fitted in {time.process_time() - t:.1f} s CPU", flush=True)
    results, specs = {}, []
    for label, forecaster in artifacts.items():
        save(forecaster, tmp / label)
        requests = bodies(forecaster, args.horizon)
        results[label] = {"in process": in_process(forecaster, requests), "requests": requests}
        specs.append({"name": f"{MODEL}-{label.lower()}", "runtime": "forecast",
                      "source": str(tmp / label), "trust_pickle": True})  # fmt: skip
    with serve(tmp, specs) as server:
        for label, spec in zip(artifacts, specs, strict=True):
            requests = list(results[label]["requests"].values())
            served(server, spec["name"], requests[:50], args.clients)  # warm
            results[label]["served"] = served(server, spec["name"], requests, args.clients)
    rows, ratios = [], []
    for label in artifacts:
        for where in ("in process", "served"):
            rate, lat = results[label][where]
            p50, _, p99 = pcts(lat)
            rows.append([label, where, rate, p50 * 1000, p99 * 1000])
        ratio = results[label]["served"][0] / results[label]["in process"][0]
        ratios.append(f"{label} {ratio:.3f}")
    flags = ["--what", "--series", "--days", "--horizon", "--clients"]
    return [
        f"## Forecasts for {args.series} series: served vs statsforecast in process ({stamp()})",
        "",
        f"`flock /tmp/bench.lock {command('bench_forecast.py', args, flags)}` — generated "
        f"demand ({args.days} daily points); AutoETS (form ANA) per series, and the global "
        f"LightGBM (lags, calendar, series id, promotion; recursive, given the promotion over "
        f"the horizon); horizon {args.horizon}, levels 80/95; {args.clients} HTTP clients; "
        f"{machine_note()}.",
        "",
        *table(["model", "called", "forecasts/s", "p50 ms", "p99 ms"], rows),
        "",
        f"Served/in-process throughput ratio: {', '.join(ratios)}.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--what", choices=("quality", "speed"), default="speed")
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--demand-series", type=int, default=200)
    parser.add_argument("--mileage-series", type=int, default=100)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--horizon", type=int, default=14)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--models", nargs="+", default=["AutoETS", "MSTL", "SeasonalNaive"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        run = quality if args.what == "quality" else speed
        text = "\n".join(run(args, Path(tmp_name)))
    print(text)
    append_section(text)


if __name__ == "__main__":
    main()
