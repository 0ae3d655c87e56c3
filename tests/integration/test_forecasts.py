"""The forecasting service end to end on a real server with generated vehicle-mileage data:
train (a job; a model per series chosen by cross-validation) → MASE and coverage against
seasonal naive → promote → forecast with intervals → appended observations move the next
forecast without a retrain; a bad training file fails its job naming line and column."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import pytest

from tests.conftest import ROOT, run_server
from tests.integration.conftest_scenarios import SCENARIO_ENV, cli, upload, wait_job, wait_ready

MODEL = "fleet"
DAY = 86400.0


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("forecast")
    data = tmp / "fleet"
    subprocess.run(
        [sys.executable, "examples/data/make_forecast.py", "--kind", "mileage", "--series", "3",
         "--days", "120", "--out", str(data)],
        check=True, cwd=ROOT,
    )  # fmt: skip
    with run_server(tmp, [], env=SCENARIO_ENV) as srv:
        http = httpx.Client(base_url=str(srv), timeout=60)
        training = upload(http, data / "series.csv")
        params = {"horizon": 7, "models": ["AutoETS", "SeasonalNaive"]}
        body = {"name": MODEL, "training_file": training, "hyperparameters": params}
        created = http.post("/v1/forecasts/models", json=body)
        assert created.status_code == 200, created.text
        job = wait_job(http, created.json()["id"], timeout_s=300)
        yield {"http": http, "job": job, "data": data, "base": str(srv)}


def forecast(env, **body) -> dict:
    answer = env["http"].post("/v1/forecasts", json={"model": MODEL, **body})
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
