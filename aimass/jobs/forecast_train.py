"""The ``forecast_train`` job kind: a forecaster trained from a long series file, each series'
model chosen by rolling-origin cross-validation, evaluated (MASE, interval coverage) against
seasonal naive."""

from __future__ import annotations

from aimass.config import Settings
from aimass.files.store import FileStore
from aimass.jobs.scenario_train import Family, ScenarioTrainKind

KIND = "forecast_train"
FORECAST = Family("forecast", metric="mase", lower_is_better=True, trust_pickle=True)


class ForecastTrainKind(ScenarioTrainKind):
    def __init__(self, files: FileStore, settings: Settings) -> None:
        super().__init__(FORECAST, files, settings)
