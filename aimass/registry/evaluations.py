"""Evaluation results of model versions, and promotion only when a candidate beats what serves.

A job that evaluates versions (fine-tuning, re-training) records each version's metrics on a
named dataset (``record_evaluation``: the validation file's id, or a held-out split's name);
they live in the version's ``notes`` under ``evaluations``, so ``aimass models show`` and
``GET /v1/admin/models`` show them. ``promote_if_better`` then promotes a candidate only if its
metric beats the serving version's on the same dataset by at least a margin: numbers measured
on different data are never compared.

Which way is better depends on the metric: lower for losses and errors (``LOWER_IS_BETTER``),
higher for everything else (accuracy, F1, AUC, recall@k, NDCG).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from aimass.errors import InvalidInput, NotFound, Unprocessable
from aimass.registry import models as registry
from aimass.registry import routes as routing
from aimass.registry.db import session_scope
from aimass.registry.tables import LOADED, ModelRow, utcnow

LOWER_IS_BETTER = frozenset(
    {"loss", "perplexity", "rmse", "mse", "mae", "mape", "mase", "wer", "cer"}
)
"""Metrics where a smaller number is the better model; every other metric is the opposite."""


@dataclass(frozen=True)
class Decision:
    """What ``promote_if_better`` decided, with the numbers behind it (for the job's result
    and the audit log: ``reason`` reads as one line)."""

    promoted: bool
    reason: str
    metric: str
    dataset: str | None = None
    candidate: float | None = None
    serving: float | None = None
    serving_version: int | None = None


def record_evaluation(
    url: str, name: str, version: int, dataset: str, metrics: dict[str, float]
) -> dict[str, Any]:
    """Store ``metrics`` of ``name:version`` on ``dataset`` (replacing an earlier result on
    the same dataset); returns the stored entry."""
    clean = {str(k): _number(k, v) for k, v in metrics.items()}
    with session_scope(url) as s:
        row = s.scalar(select(ModelRow).filter_by(name=name, version=version))
        if row is None:
            raise NotFound(f"model {name!r} has no version {version}")
        notes = json.loads(row.notes_json or "{}")
        entry = {"metrics": clean, "at": utcnow().isoformat(timespec="seconds") + "Z"}
        notes.setdefault("evaluations", {})[dataset] = entry
        row.notes_json = json.dumps(notes)
        return entry


def serving_version(url: str, name: str) -> int | None:
    """The version that serves ``name``'s plain requests as the registry sees it: the main
    version of its route, else the newest version observed ready, else the newest one marked
    to be loaded; None when nothing serves."""
    route = routing.current_route(url, name)
    if route is not None:
        return max(route.weights.items(), key=lambda item: item[1])[0]
    entries = registry.list_models(url, name)
    ready = [e.spec.version for e in entries if e.state == "ready"]
    wanted = [e.spec.version for e in entries if e.desired == LOADED]
    return (ready or wanted or [None])[-1]


def promote_if_better(
    url: str,
    name: str,
    candidate_version: int,
    metric: str,
    margin: float,
    *,
    dataset: str | None = None,
) -> Decision:
    """Promote ``candidate_version`` if its ``metric`` beats the serving version's by at least
    ``margin`` (absolute, in the metric's units, and strictly better) on the same dataset:
    ``dataset``, or by default the candidate's most recent evaluation.

    Not promoting is an answer (``Decision.promoted`` False, with the reason), not an error:
    the candidate already serves, nothing serves yet (it is promoted then), or it does not beat
    the margin. Missing evaluations are a 422 (``Unprocessable``): the job has not recorded
    what the rule needs. The caller audits the decision (``model.promote``)."""
    if not math.isfinite(margin) or margin < 0:
        raise InvalidInput(f"margin must be a finite number >= 0, got {margin!r}", param="margin")
    candidate = registry.get_model(url, name, candidate_version)
    dataset = dataset or _latest_dataset(candidate, name, metric)
    cand_value = _metric(candidate, dataset, metric)
    serving = serving_version(url, name)
    if serving is None:
        routing.promote(url, name, candidate_version)
        return Decision(True, "promoted: no version serves yet", metric, dataset, cand_value)
    if serving == candidate_version:
        reason = f"version {candidate_version} already serves"
        return Decision(False, reason, metric, dataset, cand_value, cand_value, serving)
    serv_value = _metric(registry.get_model(url, name, serving), dataset, metric)
    gain = serv_value - cand_value if metric in LOWER_IS_BETTER else cand_value - serv_value
    promoted = gain > 0 and gain >= margin
    if promoted:
        routing.promote(url, name, candidate_version)
    reason = (
        f"{'promoted' if promoted else 'not promoted'}: {metric} on {dataset}: version "
        f"{candidate_version} {cand_value:g}, serving version {serving} {serv_value:g}, "
        f"margin {margin:g}"
    )
    return Decision(promoted, reason, metric, dataset, cand_value, serv_value, serving)


def _latest_dataset(entry: registry.ModelEntry, name: str, metric: str) -> str:
    """The dataset of the candidate's most recent evaluation that has ``metric``."""
    found = [
        (result.get("at", ""), dataset)
        for dataset, result in entry.notes.get("evaluations", {}).items()
        if metric in result.get("metrics", {})
    ]
    if not found:
        raise Unprocessable(
            f"model {name!r} version {entry.spec.version} has no evaluation with {metric!r}",
            param="metric",
        )
    return max(found)[1]


def _metric(entry: registry.ModelEntry, dataset: str, metric: str) -> float:
    result = entry.notes.get("evaluations", {}).get(dataset, {})
    value = result.get("metrics", {}).get(metric)
    if value is None:
        raise Unprocessable(
            f"model {entry.spec.name!r} version {entry.spec.version} has no {metric!r} "
            f"evaluated on {dataset!r}",
            param="metric",
        )
    return float(value)


def _number(metric: Any, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidInput(f"metric {metric!r} must be a finite number, got {value!r}")
    return float(value)
