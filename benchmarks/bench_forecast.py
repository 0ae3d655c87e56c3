"""Forecast throughput for 1,000 series: AI Mass's /v1/forecasts vs. statsforecast in process,
in one run.

``--series`` generated retail-demand series (``examples/data/make_forecast.py``) each get an
AutoETS model fitted in process (the model the training job picks most often on this data),
saved as one forecaster artifact, then every series is forecast ``--horizon`` days ahead with
80 % and 95 % intervals:

* ``in-process``  each fitted statsforecast model's ``predict(h, level=[80, 95])`` in a loop;
* ``aimass``      the artifact served (runtime ``forecast``, one replica), ``--clients``
  clients posting ``{model, series_id, horizon, level}`` for every series once.

Forecasts/s and p50/p99 latency; the table and the command are appended to
benchmarks/RESULTS.md.

    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_forecast.py --series 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

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

from aimass.scenarios.forecast.data import read_series
from aimass.scenarios.forecast.model import Fitted, Forecaster
from examples.data.make_forecast import generate

MODEL = "bench-demand"
LEVELS = [80, 95]


def fitted(path: Path) -> Forecaster:
    """AutoETS restricted to one form (additive error and season, no trend: what it picks on
    most of these series) so fitting 1,000 series fits in the benchmark's time on a shared
    machine; serving cost does not depend on how the form was found."""
    series, _ = read_series(path)
    chosen = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for n, s in enumerate(series):
            model = AutoETS(season_length=7, model="ANA").fit(s.values)
            chosen[s.id] = Fitted(model, "AutoETS", s.start, s.values)
            if n % 100 == 0:
                print(f"fitted {n}/{len(series)}", flush=True)
    return Forecaster(chosen, series[0].step, 7, "AutoETS", {"models": ["AutoETS"]})


def in_process(forecaster: Forecaster, horizon: int) -> tuple[float, list[float]]:
    latencies, start = [], time.perf_counter()
    for f in forecaster.series.values():
        t = time.perf_counter()
        f.model.predict(horizon, level=LEVELS)
        latencies.append(time.perf_counter() - t)
    return len(latencies) / (time.perf_counter() - start), latencies


def served(server, ids: list[str], horizon: int, clients: int) -> tuple[float, list[float]]:
    """Every series of ``ids`` forecast once over HTTP by ``clients`` clients."""
    bodies = (orjson.dumps({"model": MODEL, "series_id": i, "horizon": horizon, "level": LEVELS})
              for i in ids)  # fmt: skip
    return run_async(closed_loop(server, "/v1/forecasts", bodies, clients))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--horizon", type=int, default=14)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = generate("demand", args.series, args.days, 11, tmp / "data")
        t = time.perf_counter()
        forecaster = fitted(path)
        fit_s = time.perf_counter() - t
        forecaster.save(tmp / "model")
        rate_lib, lat_lib = in_process(forecaster, args.horizon)
        print(f"in process: {rate_lib:.0f} forecasts/s; starting the server", flush=True)
        spec = {"name": MODEL, "runtime": "forecast", "source": str(tmp / "model"),
                "trust_pickle": True}  # fmt: skip
        ids = list(forecaster.series)
        with serve(tmp, [spec]) as server:
            served(server, ids[:50], args.horizon, args.clients)  # warm up
            rate_srv, lat_srv = served(server, ids, args.horizon, args.clients)
    rows = []
    for name, rate, lat in (("in-process statsforecast", rate_lib, lat_lib),
                            ("aimass /v1/forecasts", rate_srv, lat_srv)):  # fmt: skip
        p50, _, p99 = pcts(lat)
        rows.append([name, rate, p50 * 1000, p99 * 1000])
    flags = ["--series", "--days", "--horizon", "--clients"]
    text = [
        f"## Forecasts for {args.series} series: served vs statsforecast in process ({stamp()})",
        "",
        f"`flock /tmp/bench.lock {command('bench_forecast.py', args, flags)}` — AutoETS "
        f"(form ANA) per series ({args.days} daily points; fitting all took {fit_s:.1f} s in "
        "process), "
        f"horizon {args.horizon}, levels 80/95; {args.clients} HTTP clients; {machine_note()}.",
        "",
        *table(["system", "forecasts/s", "p50 ms", "p99 ms"], rows),
        "",
        f"Served/in-process throughput ratio: {rate_srv / rate_lib:.3f}.",
    ]
    print("\n".join(text))
    append_section("\n".join(text))


if __name__ == "__main__":
    main()
