"""``aimass forecast``: train a forecaster from a long series CSV, forecast a series, append
observations (``/v1/forecasts``)."""

from __future__ import annotations

import csv
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from aimass.cli import scenarios
from aimass.cli.files import ApiKey, Url, _fail

forecast_app = typer.Typer(help="Forecasts (/v1/forecasts).", no_args_is_help=True)


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{text!r} is neither an ISO 8601 date/time nor Unix seconds")
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@forecast_app.command("train")
def train(
    name: str,
    series: Path,
    param: scenarios.Params = None,
    no_promote: Annotated[bool, typer.Option("--no-promote")] = False,
    no_wait: scenarios.NoWait = False,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Upload SERIES (series_id,timestamp,value[,...]) and train a new version of NAME."""
    body = scenarios.training_body(url, api_key, name, series, param, no_promote)
    scenarios.train(url, api_key, "forecasts", body, not no_wait)


@forecast_app.command("series")
def series_(
    model: str,
    series_id: str,
    horizon: Annotated[int, typer.Option(min=1, max=1000)] = 7,
    level: Annotated[list[int] | None, typer.Option(help="Interval level in %.")] = None,
    future: Annotated[
        Path | None,
        typer.Option(help="CSV of the exogenous columns over the horizon: timestamp,<column>..."),
    ] = None,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """The next HORIZON points of SERIES_ID with intervals."""
    body = {"model": model, "series_id": series_id, "horizon": horizon,
            "level": level or [80, 95]}  # fmt: skip
    if future is not None:
        body["future"] = _future(future)
    scenarios.post(url, api_key, "/v1/forecasts", body)


def _future(path: Path) -> dict[str, list[float]]:
    """A ``future`` block (columns) from a CSV with a ``timestamp`` column."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "timestamp" not in rows[0]:
        _fail(f"{path}: needs a header with a timestamp column and one row per forecast time")
    columns: dict[str, list[float]] = {name: [] for name in rows[0]}
    for line, row in enumerate(rows, start=2):
        for name, text in row.items():
            try:
                columns[name].append(_seconds(text) if name == "timestamp" else float(text))
            except (TypeError, ValueError):
                _fail(f"{path}, line {line}, column {name!r}: {text!r} is not a number")
    return columns


@forecast_app.command("observe")
def observe(
    model: str,
    series_id: str,
    timestamp: str,
    value: float,
    url: Url = None,
    api_key: ApiKey = None,
) -> None:
    """Append VALUE at TIMESTAMP (ISO 8601 or Unix seconds) to SERIES_ID."""
    point = {"series_id": series_id, "timestamp": _seconds(timestamp), "value": value}
    scenarios.post(url, api_key, "/v1/forecasts/observations",
                   {"model": model, "observations": [point]})  # fmt: skip
