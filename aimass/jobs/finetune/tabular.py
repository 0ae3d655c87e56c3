"""Tabular method: LightGBM retrained from a CSV file with a label column.

The base must be a registered LightGBM model (``tabular`` runtime, a ``save_model`` text
file): the new version keeps its objective (binary, multiclass or regression), its feature
count and its class names (``options.classes``), and is served by the same runtime (input
``features``). The label column is ``hyperparameters.label_column`` or ``label``; every other
column is a feature, in file order. An epoch is ``ROUNDS_PER_EPOCH`` boosting rounds; each
epoch's booster is a checkpoint a resumed attempt continues from. Evaluation: accuracy, AUC,
macro-F1, log loss (classification) or RMSE, MAE (regression), new and serving version.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aimass.errors import InvalidInput
from aimass.jobs.finetune.data import LineError, csv_rows
from aimass.registry.models import ModelEntry
from aimass.spec import ModelSpec

ROUNDS_PER_EPOCH = 10
BASE_LEARNING_RATE = 0.1
MODEL_FILE = "model.txt"


class TabularMethod:
    name = "tabular"
    metric = "auc"
    defaults = {"n_epochs": 10, "batch_size": 1, "learning_rate_multiplier": 1.0,
                "label_column": "label"}  # fmt: skip

    def fits(self, first_line: bytes) -> bool:
        return True

    def parse(self, data: bytes, hyper: dict[str, Any], base: ModelEntry) -> list[dict]:
        names, rows, labels, numbers = csv_rows(data, hyper["label_column"])
        if len(rows) < 2:
            raise LineError(1, f"need at least 2 data rows, got {len(rows)}")
        header = _header(Path(base.spec.source))
        width = int(header.get("max_feature_idx", "-1")) + 1
        if width and len(names) != width:
            raise LineError(
                1, f"{len(names)} feature columns, model {base.spec.name!r} takes {width}"
            )
        objective = header.get("objective", "regression").split()[0]
        if objective.startswith(("binary", "multiclass")):
            count = int(header.get("num_class", "1"))
            known = [str(c) for c in base.spec.options.get("classes") or range(max(2, count))]
            for label, number in zip(labels, numbers, strict=True):
                if label not in known:
                    raise LineError(
                        number, f"label {label!r} is not one of the model's classes {known}"
                    )
        else:
            for label, number in zip(labels, numbers, strict=True):
                try:
                    float(label)
                except ValueError:
                    raise LineError(number, f"label {label!r} is not a number") from None
        return [{"x": x, "label": label} for x, label in zip(rows, labels, strict=True)]

    def target(self, base: ModelEntry, suffix: str | None) -> str:
        if Path(base.spec.source).suffix.lower() not in (".txt", ".lgb", ".model"):
            raise InvalidInput(
                f"model {base.spec.name!r}: only LightGBM models (a save_model text file) "
                "are retrained; this one is served from another format",
                param="model",
            )
        return base.spec.name

    def candidate_spec(
        self, base: ModelEntry, name: str, version: int, folder: Path, result: dict[str, Any]
    ) -> ModelSpec:
        return base.spec.model_copy(
            update={
                "name": name,
                "version": version,
                "source": str(folder / MODEL_FILE),
                "sha256": {},
                "description": f"retrained from {base.spec.name}:{base.spec.version}",
            }
        )


# ---- in the child process -------------------------------------------------------------------


def train(config: dict[str, Any], report) -> dict[str, Any]:
    import lightgbm

    hyper, workdir = config["hyper"], Path(config["workdir"])
    base = lightgbm.Booster(model_file=config["base_source"])
    objective = _header(Path(config["base_source"])).get("objective", "regression").split()[0]
    classes = config["base_options"].get("classes")
    n_classes = max(2, base.num_model_per_iteration())
    x, y = _matrix(config["train"], objective, classes, n_classes, base.num_feature())
    vx, vy = _matrix(config["valid"], objective, classes, n_classes, base.num_feature())
    params = {
        "objective": objective,
        "learning_rate": BASE_LEARNING_RATE * float(hyper["learning_rate_multiplier"]),
        "num_leaves": 15,
        "min_data_in_leaf": max(1, min(20, len(y) // 10)),
        "seed": int(config["seed"]),
        "num_threads": 1,
        "verbosity": -1,
        "deterministic": True,
    }
    if objective.startswith("multiclass"):
        params["num_class"] = n_classes
    done = report.checkpoint.get("epoch", 0)
    booster = report.checkpoint.get("path") if done else None
    if done:
        report.event(f"resuming after epoch {done} from its checkpoint", epoch=done)
    data = lightgbm.Dataset(x, y, free_raw_data=False)
    report.total = int(hyper["n_epochs"]) * ROUNDS_PER_EPOCH
    for epoch in range(done + 1, int(hyper["n_epochs"]) + 1):
        model = lightgbm.train(params, data, num_boost_round=ROUNDS_PER_EPOCH, init_model=booster)
        path = workdir / f"epoch-{epoch}.txt"
        model.save_model(str(path))
        booster = str(path)
        report.save(epoch, epoch * ROUNDS_PER_EPOCH, booster,
                    _evaluate(model, vx, vy, objective))  # fmt: skip
    out = Path(config["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    final = lightgbm.Booster(model_file=booster)
    final.save_model(str(out / MODEL_FILE))
    return {
        "candidate": _evaluate(final, vx, vy, objective),
        "serving": _evaluate(lightgbm.Booster(model_file=config["serving_source"]), vx, vy,
                             objective) if config.get("serving_source") else None,
        "steps": final.current_iteration(),
    }  # fmt: skip


def _matrix(part: list[dict[str, Any]], objective: str, classes, n_classes: int, width: int):
    import numpy as np

    x = np.asarray([row["x"] for row in part], dtype=np.float64).reshape(len(part), -1)
    if x.shape[1] != width:
        raise ValueError(f"the file has {x.shape[1]} feature columns, the model takes {width}")
    if objective.startswith(("binary", "multiclass")):
        names = [str(c) for c in (classes or range(n_classes))]
        y = np.array([names.index(row["label"]) for row in part], dtype=np.float64)
    else:
        y = np.asarray([row["label"] for row in part], dtype=np.float64)
    return x, y


def _evaluate(booster, x, y, objective: str) -> dict[str, float]:
    import numpy as np

    from aimass.jobs.finetune.metrics import classification, regression

    raw = np.asarray(booster.predict(x))
    if objective.startswith("binary"):
        return classification(np.column_stack([1 - raw, raw]), y.astype(int))
    if objective.startswith("multiclass"):
        return classification(raw, y.astype(int))
    return regression(raw, y)


def _header(path: Path) -> dict[str, str]:
    """The ``key=value`` lines of a LightGBM model file before its first tree."""
    found = {}
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("Tree="):
                break
            key, sep, value = line.strip().partition("=")
            if sep:
                found[key] = value
    return found
