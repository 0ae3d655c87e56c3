"""Tiny tabular models built in well under a second, for unit and integration tests.

Each factory writes a model file to ``path`` and returns the fitted library object, so a test
can compare the served answers with the library's own ``predict``/``predict_proba``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

N_FEATURES = 6
N_ROWS = 200


def random_rows(n: int = 16, n_features: int = N_FEATURES, seed: int = 1) -> np.ndarray:
    """Rows of float32 features, the dtype the server's ``features`` input declares."""
    return np.random.default_rng(seed).normal(size=(n, n_features)).astype(np.float32)


def training_data(task: str, n_features: int = N_FEATURES, n_classes: int = 2, seed: int = 0):
    """Features with a learnable target: class by a linear score, or a noisy linear value."""
    x = random_rows(N_ROWS, n_features, seed)
    score = x[:, 0] + 0.5 * x[:, 1] - 0.25 * x[:, 2]
    if task == "regression":
        return x, score + np.random.default_rng(seed).normal(scale=0.1, size=N_ROWS)
    edges = np.quantile(score, np.linspace(0, 1, n_classes + 1)[1:-1])
    return x, np.digitize(score, edges)


def make_lightgbm_model(path: str | Path, task: str = "classification", n_classes: int = 2) -> Any:
    """An ``LGBMClassifier``/``LGBMRegressor``; its booster is saved as a LightGBM text file."""
    import lightgbm

    x, y = training_data(task, n_classes=n_classes)
    params = {"n_estimators": 10, "num_leaves": 7, "min_child_samples": 5}
    params |= {"n_jobs": 1, "verbose": -1, "random_state": 0}
    cls = lightgbm.LGBMRegressor if task == "regression" else lightgbm.LGBMClassifier
    model = cls(**params).fit(x, y)
    model.booster_.save_model(str(path))
    return model


def make_sklearn_onnx_model(
    path: str | Path,
    task: str = "classification",
    input_name: str = "float_input",
    string_labels: bool = False,
    zipmap: bool = False,
) -> Any:
    """A LogisticRegression (or LinearRegression) converted by skl2onnx."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LinearRegression, LogisticRegression

    x, y = training_data(task, n_classes=3)
    if task == "regression":
        model = LinearRegression().fit(x, y)
        options = None
    else:
        y = np.array(["low", "mid", "high"])[y] if string_labels else y
        model = LogisticRegression(max_iter=500).fit(x, y)
        options = {id(model): {"zipmap": zipmap}}
    types = [(input_name, FloatTensorType([None, x.shape[1]]))]
    onx = convert_sklearn(model, initial_types=types, options=options)
    Path(path).write_bytes(onx.SerializeToString())
    return model


def make_pickle_model(path: str | Path, task: str = "classification") -> Any:
    """A small RandomForest saved with joblib (a pickle: load it only with trust_pickle)."""
    import joblib
    from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

    x, y = training_data(task, n_classes=3)
    cls = RandomForestRegressor if task == "regression" else RandomForestClassifier
    model = cls(n_estimators=5, max_depth=4, random_state=0).fit(x, y)
    joblib.dump(model, path)
    return model
