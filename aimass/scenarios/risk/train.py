"""Training a risk model: features replayed in time order, LightGBM on labelled events (class
imbalance weighted), Isolation Forest on all of them when some are unlabelled (or asked for),
the two scores combined with a weight chosen on validation data, thresholds chosen there for a
target precision (block) and recall (review), and the evaluation beside a rules-only baseline.

Run as ``python -m aimass.scenarios.risk.train TRAIN VALID|- PARAMS_JSON OUT`` by the training
job (in a low-priority child process); it prints progress as JSON lines and writes the model's
folder ``OUT`` (``risk.json``, ``gbm.txt``, ``iforest.pkl``, and ``state.json``: every
entity's feature state after the replay, where serving starts) and ``OUT/../report.json``.
"""

from __future__ import annotations

import json
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from aimass.errors import InvalidInput
from aimass.scenarios.risk.data import label, read_events
from aimass.scenarios.risk.evaluate import (
    at_threshold,
    average_precision,
    baseline_rule,
    threshold_for_precision,
    threshold_for_recall,
)
from aimass.scenarios.risk.features import FeatureConfig, FeatureState, replay
from aimass.scenarios.risk.rules import parse_rules
from aimass.scenarios.risk.score import Scorer

QUANTILES = 1001
"""Points of the anomaly scores' distribution kept to map a raw score to [0, 1]."""
WEIGHTS = (0.0, 0.1, 0.25, 0.5)
"""Isolation Forest weights tried when both detectors are trained (on validation AUC-PR)."""
VALIDATION_SHARE = 0.25
DEFAULTS: dict[str, Any] = {
    "entities": ["card"],
    "amount": "amount",
    "time": "timestamp",
    "label": "label",
    "numeric": [],
    "detector": "auto",
    "target_precision": 0.9,
    "target_recall": 0.8,
    "alert_rate": 0.02,
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 31,
    "seed": 0,
    "rules": None,
}


def check_params(given: dict[str, Any]) -> dict[str, Any]:
    """The training parameters with defaults; InvalidInput naming ``hyperparameters.X``."""
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidInput(
            f"hyperparameters.{name} is not a risk training parameter (known: "
            f"{', '.join(sorted(DEFAULTS))})",
            param=f"hyperparameters.{name}",
        )
    params = {**DEFAULTS, **given}

    def bad(name: str, what: str) -> InvalidInput:
        return InvalidInput(
            f"hyperparameters.{name} must be {what}", param=f"hyperparameters.{name}"
        )

    entities = params["entities"]
    if (
        not isinstance(entities, list)
        or not 1 <= len(entities) <= 8
        or not all(isinstance(e, str) and 0 < len(e) <= 64 for e in entities)
        or len(set(entities)) != len(entities)
    ):
        raise bad("entities", "a list of 1 to 8 distinct column names")
    for name in ("amount", "time", "label"):
        if not isinstance(params[name], str) or not 0 < len(params[name]) <= 64:
            raise bad(name, "a column name")
    numeric = params["numeric"]
    if not isinstance(numeric, list) or not all(isinstance(c, str) for c in numeric):
        raise bad("numeric", "a list of column names")
    if params["detector"] not in ("auto", "gbm", "iforest", "both"):
        raise bad("detector", "one of auto, gbm, iforest, both")
    for name in ("target_precision", "target_recall", "alert_rate", "learning_rate"):
        value = params[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
            raise bad(name, "a number between 0 and 1 (exclusive)")
    for name, top in (("n_estimators", 5000), ("num_leaves", 1024), ("seed", 2**31)):
        value = params[name]
        low = 0 if name == "seed" else 1
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= top:
            raise bad(name, f"an integer from {low} to {top}")
    if params["rules"] is not None:
        parse_rules(params["rules"])
    return params


@dataclass
class Split:
    features: np.ndarray
    labels: np.ndarray  # -1: unlabelled
    amounts: np.ndarray


def build(
    train: list[dict], valid: list[dict] | None, params: dict
) -> tuple[Split, Split, FeatureState]:
    """Features of every event replayed in time order (validation events after the training
    ones when a validation file is given; else the latest ``VALIDATION_SHARE`` of the file)."""
    config = _config(params)
    events = train + (valid or [])
    matrix, order, state = replay(config, events)
    labels = np.array([_label(e, params["label"], i + 1) for i, e in enumerate(events)])
    amounts = matrix[:, 0].astype(np.float64)
    if valid:
        is_valid = np.arange(len(events)) >= len(train)
    else:
        cut = int(len(events) * (1 - VALIDATION_SHARE))
        is_valid = np.zeros(len(events), dtype=bool)
        is_valid[np.asarray(order[cut:], dtype=np.int64)] = True
    if is_valid.all() or not is_valid.any():
        raise InvalidInput("the training file needs at least 8 events (4 to train on)")
    fit, val = (Split(matrix[m], labels[m], amounts[m]) for m in (~is_valid, is_valid))
    return fit, val, state


def _config(params: dict) -> FeatureConfig:
    return FeatureConfig(
        entities=tuple(params["entities"]),
        amount=params["amount"],
        time=params["time"],
        numeric=tuple(params["numeric"]),
    )


def _label(event: dict, column: str, row: int) -> int:
    found = label(event, column, row)
    return -1 if found is None else found


def train(
    train_events: list[dict], valid_events: list[dict] | None, params: dict, out: Path
) -> dict[str, Any]:
    """Train into folder ``out`` and return the report (metrics, baseline, thresholds)."""
    if len(train_events) < 8:
        raise InvalidInput("the training file needs at least 8 events")
    config = _config(params)
    fit, val, state = build(train_events, valid_events, params)
    labelled = fit.labels >= 0
    has_labels = bool(labelled.any()) and len(set(fit.labels[labelled].tolist())) == 2
    detector = params["detector"]
    if detector == "auto":
        detector = "iforest" if not has_labels else "both" if (~labelled).any() else "gbm"
    if detector in ("gbm", "both") and not has_labels:
        raise InvalidInput(
            f"detector {detector!r} needs both classes in column {params['label']!r} of the "
            "training events",
            param="hyperparameters.detector",
        )
    out.mkdir(parents=True, exist_ok=True)
    meta: dict[str, Any] = {
        "features": config.as_dict(),
        "names": config.names,
        "detector": detector,
        "mean": fit.features.mean(axis=0).tolist(),
        "std": (fit.features.std(axis=0) + 1e-9).tolist(),
        "weight": 1.0 if detector == "iforest" else 0.0,
    }
    _progress("gbm" if detector != "iforest" else "iforest", 0.1)
    if detector in ("gbm", "both"):
        _fit_gbm(fit, val, params, out)
    if detector in ("iforest", "both"):
        meta["quantiles"] = _fit_iforest(fit, params, out)
    _progress("thresholds", 0.8)
    (out / "risk.json").write_text(json.dumps(meta))
    scorer = Scorer.load(out)
    val_labelled = val.labels >= 0
    can_measure = bool(val_labelled.any()) and len(set(val.labels[val_labelled].tolist())) == 2
    if detector == "both" and can_measure:
        y = val.labels[val_labelled]
        parts = scorer.parts(val.features[val_labelled])
        best = max(WEIGHTS, key=lambda w: average_precision(y, _mix(parts, w)))
        meta["weight"] = best
        (out / "risk.json").write_text(json.dumps(meta))
        scorer = Scorer.load(out)
    scores = scorer.score(val.features)
    report: dict[str, Any] = {"detector": detector, "weight": meta["weight"]}
    if can_measure:
        y, s = val.labels[val_labelled], scores[val_labelled]
        block = threshold_for_precision(y, s, params["target_precision"])
        review = min(threshold_for_recall(y, s, params["target_recall"]), block)
        model = {"auc_pr": average_precision(y, s), **at_threshold(y, s, block)}
        model.update({f"review_{k}": v for k, v in at_threshold(y, s, review).items()})
        fit_y = fit.labels >= 0
        amount_cut = baseline_rule(fit.labels[fit_y], fit.amounts[fit_y])
        baseline = {
            "auc_pr": average_precision(y, val.amounts[val_labelled]),
            **at_threshold(y, val.amounts[val_labelled], amount_cut),
        }
        report.update(metrics=model, baseline=baseline, baseline_rule=f"amount >= {amount_cut:g}")
    else:
        block = float(np.quantile(scores, 1 - params["alert_rate"] / 10))
        review = float(np.quantile(scores, 1 - params["alert_rate"]))
        report["metrics"] = {"alert_rate": float((scores >= review).mean())}
        amount_cut = float(np.quantile(fit.amounts, 0.999))
    thresholds = {"review": float(review), "block": float(block)}
    rules = params["rules"]
    if rules is None:
        rules = [
            {
                "name": "large_amount_risky",
                "when": f"amount >= {amount_cut:.2f} and score >= {review:.6g}",
                "action": "block",
            }
        ]
    meta.update(thresholds=thresholds, rules=rules, report=report)
    (out / "risk.json").write_text(json.dumps(meta))
    (out / "state.json").write_text(json.dumps(state.dump_all()))
    report.update(thresholds=thresholds, rules=rules, events=len(fit.labels) + len(val.labels))
    _progress("done", 1.0)
    return report


def _mix(parts: tuple[np.ndarray | None, np.ndarray | None], weight: float) -> np.ndarray:
    gbm, anomaly = parts
    if gbm is None:
        return anomaly  # type: ignore[return-value]
    if anomaly is None:
        return gbm
    return (1 - weight) * gbm + weight * anomaly


def _fit_gbm(fit: Split, val: Split, params: dict, out: Path) -> None:
    """Boost up to ``n_estimators`` rounds, stopping when the validation events' average
    precision has not improved for 30: every tree is paid again on each scored event (the
    top features walk all of them), and the generated data needs about a fifth of 200."""
    import lightgbm as lgb

    mask = fit.labels >= 0
    y = fit.labels[mask]
    positives = max(int(y.sum()), 1)
    valid = val.labels >= 0
    stops = valid.any() and len(set(val.labels[valid].tolist())) == 2
    train_set = lgb.Dataset(fit.features[mask], label=y, free_raw_data=True)
    booster = lgb.train(
        {
            "objective": "binary",
            "metric": "average_precision",
            "learning_rate": params["learning_rate"],
            "num_leaves": params["num_leaves"],
            "scale_pos_weight": (len(y) - positives) / positives,
            "min_data_in_leaf": 10,
            "feature_fraction": 0.9,
            "seed": params["seed"],
            "num_threads": 1,
            "verbose": -1,
        },
        train_set,
        num_boost_round=params["n_estimators"],
        valid_sets=[lgb.Dataset(val.features[valid], label=val.labels[valid], reference=train_set)]
        if stops
        else None,
        callbacks=[lgb.early_stopping(30, verbose=False)] if stops else None,
    )
    booster.save_model(str(out / "gbm.txt"))


def _fit_iforest(fit: Split, params: dict, out: Path) -> list[float]:
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=100, random_state=params["seed"], n_jobs=1)
    forest.fit(fit.features)
    raw = -forest.score_samples(fit.features)
    with (out / "iforest.pkl").open("wb") as f:
        pickle.dump(forest, f)
    return np.quantile(raw, np.linspace(0, 1, QUANTILES)).tolist()


def _progress(stage: str, fraction: float) -> None:
    print(json.dumps({"progress": {"stage": stage, "fraction": fraction}}), flush=True)


def main(argv: list[str]) -> int:
    train_path, valid_path, params_json, out = argv
    params = json.loads(params_json)
    report_path = Path(out).parent / "report.json"
    try:
        params = check_params(params)
        events = read_events(Path(train_path))
        valid = None if valid_path == "-" else read_events(Path(valid_path))
        report = train(events, valid, params, Path(out))
    except InvalidInput as exc:
        report_path.write_text(json.dumps({"error": str(exc), "param": exc.param}))
        return 0
    report_path.write_text(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
