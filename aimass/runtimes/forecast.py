"""The runtime serving a trained forecaster (``aimass.scenarios.forecast``) in a replica.

Each row is one request as JSON text (``request``): ``{"series_id" | "history", "horizon",
"level", "observations", "future"}`` (``future``: the exogenous columns over the horizon, read
by a gradient-boosting forecaster); ``observations`` are the series' points stored since
training, re-applied here to the fitted model, so replicas keep no state. A gradient-boosting
forecaster steps all the rows of a batch through its recursion together. The artifact is a
pickle this server's own training job wrote, so the spec sets ``trust_pickle`` (the loader
refuses otherwise). A bad row fails alone (a 400).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson

from aimass.errors import InvalidInput
from aimass.runtimes.base import ROW_ERRORS, Payload, Runtime, TensorInfo
from aimass.scenarios.csvfile import TrainingFileError
from aimass.scenarios.forecast.gbm import GbmForecaster, Prepared
from aimass.scenarios.forecast.model import AnyForecaster, load

REQUEST, RESULT = "request", "result"
MAX_HORIZON = 1000


class ForecastRuntime(Runtime):
    model: AnyForecaster

    def load(self) -> None:
        if not self.spec.trust_pickle:
            raise ValueError("a forecaster artifact is a pickle: its spec must set trust_pickle")
        self.model = load(Path(self.spec.source))

    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(REQUEST, "BYTES", [-1])]

    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(RESULT, "BYTES", [-1])]

    def describe(self) -> dict[str, Any]:
        return {"task": "forecasting", "series": len(self.model.series),
                "step_s": self.model.step, "season_length": self.model.season,
                "method": self.model.default_model,
                "exogenous": getattr(self.model, "columns", [])}  # fmt: skip

    def infer(self, batch: Payload) -> Payload:
        rows = batch[REQUEST]
        results = np.full(len(rows), "", dtype=object)
        errors: list[Any] = [None] * len(rows)
        waiting: dict[int, Prepared] = {}
        for i, row in enumerate(rows):
            try:
                args = self.parse(row)
                if isinstance(self.model, GbmForecaster):
                    waiting[i] = self.model.prepare(*args)
                else:
                    results[i] = orjson.dumps(self.model.forecast(*args)).decode()
            except InvalidInput as exc:
                errors[i] = exc
            except TrainingFileError as exc:
                errors[i] = InvalidInput(str(exc).replace("line", "point"), param="history")
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
                errors[i] = InvalidInput(f"{REQUEST} is not a valid request: {exc}", param=REQUEST)
        if waiting:
            assert isinstance(self.model, GbmForecaster)
            for i, answer in zip(waiting, self.model.finish(list(waiting.values())), strict=True):
                results[i] = orjson.dumps(answer).decode()
        out: Payload = {RESULT: results}
        if any(errors):
            out[ROW_ERRORS] = errors  # type: ignore[assignment]
        return out

    def parse(self, row: Any) -> tuple[Any, ...]:
        """A request row as the forecaster's arguments (series_id, history, observations,
        horizon, levels, future)."""
        request = orjson.loads(row)
        if not isinstance(request, dict):
            raise InvalidInput(f"{REQUEST} must be a JSON object as text", param=REQUEST)
        sid = request.get("series_id")
        if sid is not None and sid not in self.model.series:
            raise InvalidInput(f"series {sid!r} is not known to this model", param="series_id")
        history = [(float(t), float(v)) for t, v in request.get("history") or []]
        if sid is None and len(history) < 2:
            raise InvalidInput("give series_id, or a history of at least 2 points", param="history")
        observations = [(float(t), float(v)) for t, v in request.get("observations") or []]
        horizon = int(request["horizon"])
        if not 1 <= horizon <= MAX_HORIZON:
            raise InvalidInput(f"horizon must be from 1 to {MAX_HORIZON}", param="horizon")
        levels = [int(x) for x in request.get("level") or []]
        if any(not 1 <= level <= 99 for level in levels):
            raise InvalidInput("level: each must be from 1 to 99", param="level")
        future = request.get("future")
        if future is not None and not isinstance(future, dict):
            raise InvalidInput("future must be an object of columns", param="future")
        return sid, history, observations, horizon, levels, future
