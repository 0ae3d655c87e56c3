"""The training child of a ``forecast_train`` job: ``python -m aimass.scenarios.forecast.train
SPEC.json`` (the series file, hyperparameters, output folder, and optionally the serving
version's artifact to backtest on the same series). Writes ``out/model`` and ``result.json``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aimass.scenarios import report
from aimass.scenarios.csvfile import TrainingFileError
from aimass.scenarios.forecast.data import read_series
from aimass.scenarios.forecast.model import evaluate_serving, fit, hyperparameters, load, save


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    try:
        params = hyperparameters(spec.get("hyperparameters") or {})
        series, exogenous = read_series(Path(spec["training_file"]))
    except TrainingFileError as exc:
        report.refuse(out, f"training file: {exc}")
    except ValueError as exc:
        report.refuse(out, str(exc))
    report.event("read", series=len(series), points=sum(len(s.values) for s in series),
                 filled=sum(s.filled for s in series), exogenous=exogenous)  # fmt: skip
    try:
        forecaster, evaluation = fit(
            series, params, exogenous,
            lambda done, total: report.progress(series_done=done, total=total),
        )  # fmt: skip
    except ValueError as exc:
        report.refuse(out, str(exc))
    report.event(evaluation["reason"], families=evaluation["families"],
                 chosen=evaluation["chosen"])  # fmt: skip
    serving = None
    if spec.get("compare"):
        serving = evaluate_serving(load(Path(spec["compare"])), series, exogenous,
                                   params["horizon"], params["windows"])  # fmt: skip
        report.event("serving version evaluated", metrics=serving)
    save(forecaster, out / "model")
    report.finish(out, {**evaluation, "serving": serving, "params": params})


if __name__ == "__main__":
    main(sys.argv[1])
