"""The ``risk`` runtime: a model folder made by the risk training job (``risk.json`` with
LightGBM ``gbm.txt`` and/or an Isolation Forest ``iforest.pkl``), serving feature rows.

Inputs ``features`` FP32 ``[-1, F]`` (the rows ``aimass.scenarios.risk.features`` computes in
the server); outputs ``score`` FP32 ``[-1]`` in [0, 1] and ``contrib`` FP32 ``[-1, F]``, each
feature's contribution to the score (LightGBM ``pred_contrib``). Rows batch like any tabular
model's. The per-entity feature state lives in the server, not here: a replica restart or a
second replica never splits an entity's history.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aimass.errors import InvalidInput
from aimass.runtimes.base import Payload, Runtime, TensorInfo
from aimass.scenarios.risk.score import Scorer


class RiskRuntime(Runtime):
    def load(self) -> None:
        folder = Path(self.spec.source)
        if (folder / "iforest.pkl").exists() and not self.spec.trust_pickle:
            raise InvalidInput(
                f"model {self.spec.name!r}: iforest.pkl is a pickle; set trust_pickle to load it",
                param="trust_pickle",
            )
        self.scorer = Scorer.load(folder)

    def inputs(self) -> list[TensorInfo]:
        return [TensorInfo("features", "FP32", [-1, self.scorer.width])]

    def outputs(self) -> list[TensorInfo]:
        return [
            TensorInfo("score", "FP32", [-1]),
            TensorInfo("contrib", "FP32", [-1, self.scorer.width]),
        ]

    def infer(self, batch: Payload) -> Payload:
        x = np.asarray(batch["features"], dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.scorer.width:
            raise InvalidInput(f"features must be [rows, {self.scorer.width}]", param="features")
        return {
            "score": self.scorer.score(x).astype(np.float32),
            "contrib": self.scorer.contributions(x).astype(np.float32),
        }

    def describe(self) -> dict:
        meta = self.scorer.meta
        return {"features": meta["names"], "thresholds": meta.get("thresholds", {})}
