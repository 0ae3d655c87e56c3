"""The scoring half of a trained risk model, shared by the training job (to choose thresholds
on exactly what will serve) and the ``risk`` runtime: score in [0, 1] and per-feature
contributions for a batch of feature rows."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Scorer:
    """LightGBM probability and/or Isolation Forest anomaly (mapped to [0, 1] through the
    training scores' quantiles), mixed with ``weight`` on the anomaly part."""

    meta: dict[str, Any]
    gbm: Any = None
    forest: Any = None

    @classmethod
    def load(cls, folder: Path) -> Scorer:
        meta = json.loads((folder / "risk.json").read_text())
        gbm = forest = None
        if (folder / "gbm.txt").exists():
            import lightgbm as lgb

            gbm = lgb.Booster(model_file=str(folder / "gbm.txt"))
        if (folder / "iforest.pkl").exists():
            with (folder / "iforest.pkl").open("rb") as f:
                forest = pickle.load(f)
        return cls(meta, gbm, forest)

    @property
    def width(self) -> int:
        return len(self.meta["names"])

    def parts(self, x: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        gbm = None if self.gbm is None else self.gbm.predict(x, num_threads=1)
        anomaly = None
        if self.forest is not None:
            quantiles = np.asarray(self.meta["quantiles"])
            raw = -self.forest.score_samples(x)
            anomaly = np.searchsorted(quantiles, raw, side="right") / len(quantiles)
        return gbm, anomaly

    def score(self, x: np.ndarray) -> np.ndarray:
        gbm, anomaly = self.parts(x)
        weight = float(self.meta.get("weight", 0.0))
        if gbm is None:
            return np.asarray(anomaly, dtype=np.float64)
        if anomaly is None:
            return np.asarray(gbm, dtype=np.float64)
        return (1 - weight) * gbm + weight * anomaly

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Per-feature contributions: LightGBM's SHAP values (``pred_contrib``, log-odds), or
        for an anomaly-only model how far each feature is from its training mean (z)."""
        if self.gbm is not None:
            return self.gbm.predict(x, pred_contrib=True, num_threads=1)[:, : self.width]
        mean, std = np.asarray(self.meta["mean"]), np.asarray(self.meta["std"])
        return np.abs((x - mean) / std)
