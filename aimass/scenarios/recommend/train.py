"""The training child of a ``recommend_train`` job: ``python -m aimass.scenarios.recommend.train
SPEC.json``, where the spec names the interactions file, optional item metadata, the
hyperparameters, the output folder and optionally the serving version's artifact to compare on
the same hold-out. Writes the artifact in ``out/model`` and ``result.json`` (metrics)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aimass.scenarios import report
from aimass.scenarios.csvfile import TrainingFileError
from aimass.scenarios.recommend.data import read_interactions, read_items
from aimass.scenarios.recommend.model import (
    Recommender,
    evaluate,
    evaluate_popularity,
    hyperparameters,
    time_split,
    train,
)


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    out = Path(spec["out"])
    try:
        params = hyperparameters(spec.get("hyperparameters") or {})
        data = read_interactions(Path(spec["training_file"]))
        if spec.get("events_file"):
            data = data.extended(read_interactions(Path(spec["events_file"])))
        metadata = read_items(Path(spec["items_file"])) if spec.get("items_file") else None
        split = time_split(data, float(params["holdout_fraction"]))
    except TrainingFileError as exc:
        report.refuse(out, f"training file: {exc}")
    except ValueError as exc:
        report.refuse(out, str(exc))
    report.event("read", interactions=len(data), users=len(set(data.users)),
                 items=len(set(data.items)), test_users=len(split.test))  # fmt: skip
    report.progress(phase="evaluating", step=1, steps=3)
    k = params["k"]
    held_out = train(split.train, params, metadata)
    metrics = evaluate(held_out, split, k)
    baseline = evaluate_popularity(split, k)
    report.event("evaluated", model=metrics, popularity=baseline)
    serving = None
    if spec.get("compare"):
        serving = evaluate(Recommender.load(Path(spec["compare"])), split, k)
        report.event("serving version evaluated", metrics=serving)
    report.progress(phase="training", step=2, steps=3)
    final = train(data, params, metadata)
    final.save(out / "model")
    report.progress(phase="saved", step=3, steps=3)
    report.finish(out, {
        "metrics": metrics, "baseline": baseline, "serving": serving, "k": k,
        "params": params, "users": len(final.user_ids), "items": len(final.item_ids),
        "interactions": len(data),
    })  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1])
