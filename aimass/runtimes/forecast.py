"""The runtime serving a trained forecaster (``aimass.scenarios.forecast``) in a replica.

Each row is one request as JSON text (``request``): ``{"series_id" | "history", "horizon",
"level", "observations", "future"}`` (``future``: the exogenous columns over the horizon, read
by a gradient-boosting forecaster); ``observations`` are the series' points stored since training,
re-applied here to the fitted model, so replicas keep no state. The artifact is a pickle this
server's own training job wrote, so the spec sets ``trust_pickle`` (the loader refuses
otherwise). A bad row fails alone (a 400).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson

from aimass.errors import InvalidInput
from aimass.runtimes.base import ROW_ERRORS, Payload, Runtime, TensorInfo
from aimass.scenarios.csvfile import TrainingFileError
from aimass.scenarios.forecast.model import AnyForecaster, load

REQUEST, RESULT = "request", "result"


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
        results = np.empty(len(rows), dtype=object)
        errors: list[Any] = [None] * len(rows)
        for i, row in enumerate(rows):
            results[i] = ""
            try:
                results[i] = orjson.dumps(self.answer(row)).decode()
            except InvalidInput as exc:
                errors[i] = exc
            except TrainingFileError as exc:
                errors[i] = InvalidInput(str(exc).replace("line", "point"), param="history")
            except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
                errors[i] = InvalidInput(f"{REQUEST} is not a valid request: {exc}", param=REQUEST)
        out: Payload = {RESULT: results}
        if any(errors):
            out[ROW_ERRORS] = errors  # type: ignore[assignment]
        return out

    def answer(self, row: Any) -> dict[str, Any]:
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
        levels = [int(x) for x in request.get("level") or []]
        future = request.get("future")
        if future is not None and not isinstance(future, dict):
            raise InvalidInput("future must be an object of columns", param="future")
        return self.model.forecast(sid, history, observations, int(request["horizon"]), levels,
                                   future)  # fmt: skip
