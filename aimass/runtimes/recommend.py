"""The runtime serving a trained recommender (``aimass.scenarios.recommend``) in a replica.

Each row is one request as JSON text (``request``): ``{"op": "recommend", "user", "n",
"exclude_seen", "filter", "events"}`` or ``{"op": "similar", "item", "n"}``; the answer is
JSON text (``result``). ``events`` are the user's interactions stored since training: they are
folded in here, so the replica keeps no per-user state and every replica answers alike. A row
that is not such a request fails alone (a 400), never the batch. The batch's recommendations
are answered together (``Recommender.recommend_many``: one ``implicit`` call for the users of
requests alike), which is what the dynamic batcher's merged rows buy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
from threadpoolctl import threadpool_limits

from aimass.errors import InvalidInput
from aimass.runtimes.base import ROW_ERRORS, Payload, Runtime, TensorInfo
from aimass.scenarios.recommend.model import Ask, Recommender

REQUEST, RESULT = "request", "result"


class RecommendRuntime(Runtime):
    model: Recommender

    def load(self) -> None:
        source = Path(self.spec.source)
        if not source.is_dir():
            raise FileNotFoundError(f"recommender artifact folder {source} does not exist")
        self.model = Recommender.load(source, threads=self.spec.threads)
        # implicit scores with BLAS; OpenBLAS's own pool (a thread per core) spins beside the
        # replica's threads: 0.33 vs 0.23 ms CPU per lone recommendation on 2 cores
        self._blas = threadpool_limits(self.spec.threads, "blas")

    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo(REQUEST, "BYTES", [-1])]

    def outputs(self) -> list[TensorInfo]:
        return [TensorInfo(RESULT, "BYTES", [-1])]

    def describe(self) -> dict[str, Any]:
        return {
            "task": "recommendation",
            "users": len(self.model.user_ids),
            "items": len(self.model.item_ids),
            "algorithm": self.model.params.get("algorithm"),
        }

    def infer(self, batch: Payload) -> Payload:
        rows = batch[REQUEST]
        results = np.empty(len(rows), dtype=object)
        errors: list[Any] = [None] * len(rows)
        asks: dict[int, Ask] = {}
        for i, row in enumerate(rows):
            try:
                request = _request(row)
                if request.get("op") == "similar":
                    results[i] = orjson.dumps(self.similar(request)).decode()
                else:
                    asks[i] = _ask(request)
            except InvalidInput as exc:
                results[i], errors[i] = "", exc
            except (TypeError, ValueError, IndexError, AttributeError) as exc:
                results[i], errors[i] = "", _invalid(exc)
        for i, answer in self._recommend(asks).items():
            if isinstance(answer, Exception):
                results[i], errors[i] = "", _invalid(answer)
            else:
                results[i] = orjson.dumps(answer).decode()
        out: Payload = {RESULT: results}
        if any(errors):
            out[ROW_ERRORS] = errors  # type: ignore[assignment]
        return out

    def _recommend(self, asks: dict[int, Ask]) -> dict[int, dict[str, Any] | Exception]:
        """All the batch's recommendations in one ``recommend_many``; should that fail, each
        is asked alone, so a row that cannot be answered fails by itself."""
        try:
            return dict(zip(asks, self.model.recommend_many(list(asks.values())), strict=True))
        except (TypeError, ValueError, IndexError, AttributeError):
            answers: dict[int, dict[str, Any] | Exception] = {}
            for i, ask in asks.items():
                try:
                    answers[i] = self.model.recommend_many([ask])[0]
                except (TypeError, ValueError, IndexError, AttributeError) as exc:
                    answers[i] = exc
            return answers

    def similar(self, request: dict[str, Any]) -> dict[str, Any]:
        item = str(request.get("item", ""))
        found = self.model.similar(item, _n(request))
        if found is None:
            raise InvalidInput(f"item {item!r} is not known to this model", param="item")
        return {"items": found}


def _n(request: dict[str, Any]) -> int:
    n = request.get("n", 10)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInput("n must be an integer >= 1", param="n")
    return n


def _ask(request: dict[str, Any]) -> Ask:
    events = [(str(e[0]), float(e[1])) for e in request.get("events") or []]
    filters = {str(k): [str(x) for x in v] for k, v in (request.get("filter") or {}).items()}
    return Ask(str(request.get("user", "")), _n(request), bool(request.get("exclude_seen", True)),
               filters, events)  # fmt: skip


def _invalid(exc: Exception) -> InvalidInput:
    return InvalidInput(f"{REQUEST} is not a valid request: {exc}", param=REQUEST)


def _request(row: Any) -> dict[str, Any]:
    try:
        request = orjson.loads(row)
    except (orjson.JSONDecodeError, TypeError):
        request = None
    if not isinstance(request, dict):
        raise InvalidInput(f"{REQUEST} must be a JSON object as text", param=REQUEST)
    return request
