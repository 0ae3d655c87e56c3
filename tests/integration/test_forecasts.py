"""The forecasting service end to end on a real server with generated data: vehicle mileage
(statistical models, one per series chosen by backtest) and retail demand with a promotion
column (the global gradient-boosting model): train (a job) → MASE and coverage against
seasonal naive → promote → forecast with intervals (the GBM given the promotion over the
horizon) → appended observations move the next forecast without a retrain; a bad training
file fails its job naming line and column."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime

import httpx
import pytest

from aimass.scenarios.forecast.data import read_series
from tests.conftest import ROOT, run_server
from tests.integration.conftest_scenarios import SCENARIO_ENV, cli, upload, wait_job, wait_ready

MODEL, SHOP = "fleet", "shop"
DAY = 86400.0


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("forecast")
    data = tmp / "fleet"
    shop = tmp / "shop"
    for kind, count, days, out in (("mileage", "3", "120", data), ("demand", "12", "150", shop)):
        subprocess.run(
            [sys.executable, "examples/data/make_forecast.py", "--kind", kind, "--series", count,
             "--days", days, "--out", str(out)],
            check=True, cwd=ROOT,
        )  # fmt: skip
    with run_server(tmp, [], env=SCENARIO_ENV) as srv:
        http = httpx.Client(base_url=str(srv), timeout=60)
        jobs = {}
        for name, folder, params in (
            (MODEL, data, {"model": "statistical", "models": ["AutoETS", "SeasonalNaive"]}),
            (SHOP, shop, {"model": "gbm"}),
        ):
            body = {"name": name, "training_file": upload(http, folder / "series.csv"),
                    "hyperparameters": {"horizon": 7, **params}}  # fmt: skip
            created = http.post("/v1/forecasts/models", json=body)
            assert created.status_code == 200, created.text
            jobs[name] = created.json()["id"]
        done = {name: wait_job(http, job_id, timeout_s=300) for name, job_id in jobs.items()}
        yield {"http": http, "job": done[MODEL], "shop_job": done[SHOP], "data": data,
               "shop": shop, "base": str(srv)}  # fmt: skip


def forecast(env, model: str = MODEL, **body) -> dict:
    answer = env["http"].post("/v1/forecasts", json={"model": model, **body})
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_training_backtests_against_seasonal_naive_and_promotes(env):
    job = env["job"]
    assert job["kind"] == "forecast_train" and job["status"] == "completed", job
    result = job["result"]
    assert result["promoted"] is True and result["metric"] == "mase", result
    assert result["metrics"]["mase"] < result["baseline"]["mase"]
    assert {"coverage_80", "coverage_95"} <= set(result["metrics"])
    wait_ready(env["http"], MODEL)


def test_a_series_forecast_has_ordered_intervals_on_the_next_days(env):
    wait_ready(env["http"], MODEL)
    answer = forecast(env, series_id="vehicle-0001", horizon=7, level=[80, 95])
    assert len(answer["mean"]) == 7 and answer["method"] in ("AutoETS", "SeasonalNaive")
    last = env["data"].joinpath("series.csv").read_text().splitlines()[-1]
    assert answer["timestamps"][1] - answer["timestamps"][0] == DAY
    lo95, lo80 = answer["intervals"]["95"]["lo"], answer["intervals"]["80"]["lo"]
    hi80, hi95 = answer["intervals"]["80"]["hi"], answer["intervals"]["95"]["hi"]
    for i in range(7):
        assert lo95[i] <= lo80[i] <= answer["mean"][i] <= hi80[i] <= hi95[i]
    assert last.startswith("vehicle-0002")
    history = [{"timestamp": i * DAY, "value": 100 + 30 * (i % 7 == 5)} for i in range(60)]
    adhoc = forecast(env, history=history, horizon=3, level=[90])
    assert len(adhoc["mean"]) == 3 and set(adhoc["intervals"]) == {"90"}
    both = env["http"].post("/v1/forecasts", json={"model": MODEL, "horizon": 3})
    assert both.status_code == 400
    body = {"model": MODEL, "series_id": "nope", "horizon": 3}
    unknown = env["http"].post("/v1/forecasts", json=body)
    assert unknown.status_code == 400 and "nope" in unknown.text


def test_appended_observations_move_the_next_forecast_without_retraining(env):
    http = env["http"]
    wait_ready(http, MODEL)
    before = forecast(env, series_id="vehicle-0000", horizon=7)
    start = before["timestamps"][0]
    points = [{"series_id": "vehicle-0000", "timestamp": start + i * DAY, "value": 900.0}
              for i in range(7)]  # fmt: skip
    stored = http.post("/v1/forecasts/observations",
                       json={"model": MODEL, "observations": points})  # fmt: skip
    assert stored.status_code == 200 and stored.json()["stored"] == 7
    after = forecast(env, series_id="vehicle-0000", horizon=7)
    assert after["observations_used"] == before["observations_used"] + 7
    assert after["timestamps"][0] == start + 7 * DAY
    assert sum(after["mean"]) > sum(before["mean"])


def test_a_bad_series_file_fails_its_job_naming_line_and_column(env, tmp_path):
    http = env["http"]
    bad = tmp_path / "bad.csv"
    bad.write_text("series_id,timestamp,value\na,2025-01-01,1\na,2025-01-02,lots\n")
    job = wait_job(http, http.post("/v1/forecasts/models",
                                   json={"name": "broken", "training_file": upload(http, bad)})
                   .json()["id"])  # fmt: skip
    assert job["status"] == "failed" and job["error"]["code"] == "invalid_training_file", job
    assert "line 3" in job["error"]["message"] and "'value'" in job["error"]["message"]


def test_the_cli_forecasts_appends_and_reports_a_failed_training(env, tmp_path):
    wait_ready(env["http"], MODEL)
    asked = cli(env["base"], "forecast", "series", MODEL, "vehicle-0002", "--horizon", "3",
                "--level", "90")  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert len(answer["mean"]) == 3 and set(answer["intervals"]) == {"90"}
    noted = cli(env["base"], "forecast", "observe", MODEL, "vehicle-0002", "2025-05-01", "120")
    assert noted.returncode == 0 and json.loads(noted.stdout)["stored"] == 1
    bad = tmp_path / "bad.csv"
    bad.write_text("series_id,when,value\na,2025-01-01,1\n")
    failed = cli(env["base"], "forecast", "train", "broken-cli", str(bad))
    assert failed.returncode == 1 and "timestamp" in json.loads(failed.stdout)["error"]["message"]


def promotions(times: list[float], on: frozenset[int] = frozenset()) -> dict:
    return {"timestamp": times, "promotion": [float(k in on) for k in range(len(times))]}


def test_the_gbm_is_trained_on_the_promotion_column_and_beats_seasonal_naive(env):
    job = env["shop_job"]
    assert job["status"] == "completed", job
    result = job["result"]
    assert result["family"] == "gbm" and "forced" in result["reason"], result
    assert set(result["families"]) == {"gbm", "seasonal_naive"}
    assert result["metrics"]["mase"] < result["baseline"]["mase"] and result["promoted"]
    listed = env["http"].get("/v1/admin/models").json()["data"]
    notes = next(m["notes"] for m in listed if m["name"] == SHOP)
    assert {k.rsplit(":", 1)[-1] for k in notes["evaluations"]} == {"holdout", "baseline", "gbm"}


def test_gbm_forecasts_read_future_promotions_and_new_observations(env, tmp_path):
    http = env["http"]
    wait_ready(http, SHOP)
    series, _ = read_series(env["shop"] / "series.csv")
    end = next(s.end for s in series if s.id == "sku-0003")
    body = {"series_id": "sku-0003", "horizon": 7, "level": [80, 95]}
    missing = http.post("/v1/forecasts", json={"model": SHOP, **body})
    assert missing.status_code == 400 and "promotion" in missing.text, missing.text
    days = [end + (k + 1) * DAY for k in range(8)]
    plain = forecast(env, SHOP, **body, future=promotions(days))
    assert plain["method"] == "LightGBM" and plain["timestamps"] == days[:7]
    promoted = forecast(env, SHOP, **body, future=promotions(days, frozenset({2})))
    assert promoted["mean"][2] > plain["mean"][2] * 1.3, (plain["mean"], promoted["mean"])
    lo95, hi95 = promoted["intervals"]["95"]["lo"], promoted["intervals"]["95"]["hi"]
    assert all(lo95[k] <= promoted["mean"][k] <= hi95[k] for k in range(7))
    point = {"series_id": "sku-0003", "timestamp": days[0], "value": 10 * max(plain["mean"])}
    stored = http.post("/v1/forecasts/observations", json={"model": SHOP, "observations": [point]})
    assert stored.status_code == 200
    after = forecast(env, SHOP, **body, future=promotions([*days[1:], days[-1] + DAY]))
    assert after["timestamps"][0] == days[1]
    assert after["observations_used"] == plain["observations_used"] + 1
    assert after["mean"][0] > plain["mean"][1]
    future = tmp_path / "future.csv"
    rows = [f"{datetime.fromtimestamp(t, UTC):%Y-%m-%d},0" for t in days]
    future.write_text("\n".join(["timestamp,promotion", *rows[1:4]]) + "\n")
    asked = cli(env["base"], "forecast", "series", SHOP, "sku-0003", "--horizon", "3",
                "--future", str(future))  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["method"] == "LightGBM" and answer["mean"][:3] == after["mean"][:3]
