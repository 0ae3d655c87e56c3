"""The ``forecast_train`` job kind: a forecaster trained from a long series file. The
statistical models (chosen per series) and the global gradient-boosting model are backtested
on the same rolling origins and the one with the lower MASE is kept (or the one the ``model``
hyperparameter forces); the version's evaluation records both families' figures beside
seasonal naive, and the job's result says which family won and why."""

from __future__ import annotations

from typing import Any

from aimass.config import Settings
from aimass.files.store import FileStore
from aimass.jobs.kind import JobContext, Outcome
from aimass.jobs.scenario_train import Family, ScenarioTrainKind
from aimass.registry.evaluations import record_evaluation

KIND = "forecast_train"
FORECAST = Family("forecast", metric="mase", lower_is_better=True, trust_pickle=True)


class ForecastTrainKind(ScenarioTrainKind):
    def __init__(self, files: FileStore, settings: Settings) -> None:
        super().__init__(FORECAST, files, settings)

    async def run(self, job: JobContext) -> Outcome:
        outcome = await super().run(job)
        result = job.checkpoint.get("result") or {}
        outcome.result.update({key: result[key] for key in ("family", "reason", "families")
                               if key in result})  # fmt: skip
        return outcome

    def _register(self, job: JobContext, name: str, result: dict[str, Any]) -> int:
        """Register as every family does, then record each backtested family's figures as
        ``<dataset>:<family>`` beside the kept one's and the baseline's."""
        version = super()._register(job, name, result)
        dataset = self._dataset(job)
        for family, metrics in (result.get("families") or {}).items():
            if family != "seasonal_naive":
                record_evaluation(self.url, name, version, f"{dataset}:{family}", metrics)
        return version
