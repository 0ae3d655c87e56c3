"""Helpers shared by the scenario services' tests: upload a training file, start a training job
through HTTP, wait for it, and wait for the version it promoted to serve."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from aimass.scenarios.forecast import model as forecasting
from aimass.scenarios.forecast.data import read_series
from aimass.scenarios.recommend.data import read_interactions, read_items
from aimass.scenarios.recommend.model import hyperparameters, train
from examples.data.make_forecast import generate as generate_series
from examples.data.make_recommend import generate
from tests.conftest import ROOT
from tests.integration.conftest_batches import ENV

SCENARIO_ENV = {**ENV, "OPENBLAS_NUM_THREADS": "1"}
TERMINAL = ("completed", "failed", "cancelled", "expired")


def upload(http: httpx.Client, path: Path) -> str:
    with open(path, "rb") as handle:
        answer = http.post("/v1/files", data={"purpose": "fine-tune"},
                           files={"file": (path.name, handle, "text/csv")})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()["id"]


def wait_job(http: httpx.Client, job_id: str, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = http.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in TERMINAL:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} is still {job['status']} after {timeout_s} s")


def wait_ready(http: httpx.Client, model: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if http.get(f"/v2/models/{model}/ready").status_code == 200:
            return
        time.sleep(0.2)
    raise AssertionError(f"model {model} is not ready after {timeout_s} s")


def tiny_recommender(folder: Path) -> Path:
    """A small trained recommender artifact (generated shop data), built in process."""
    generate(60, 30, 8, 20, 3, folder / "data")
    params = hyperparameters({"factors": 8, "iterations": 3})
    data = read_interactions(folder / "data" / "interactions.csv")
    model = train(data, params, read_items(folder / "data" / "items.csv"))
    model.save(folder / "model")
    return folder / "model"


def tiny_forecaster(folder: Path) -> Path:
    """A small forecaster artifact (two generated demand series, seasonal naive), in process."""
    path = generate_series("demand", 2, 60, 5, folder / "data")
    series, columns = read_series(path)
    params = forecasting.hyperparameters(
        {"model": "statistical", "models": ["SeasonalNaive"], "horizon": 7}
    )
    forecaster, _ = forecasting.fit(series, params, columns)
    forecasting.save(forecaster, folder / "model")
    return folder / "model"


def cli(base: str, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess:
    """``aimass ARGS --url BASE`` as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "aimass", *args, "--url", base],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
