"""Metrics of a risk score on labelled events, the thresholds met for a target precision or
recall, and the rules-only baseline (one amount threshold, the rule a team writes first)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve


def average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """AUC-PR (average precision): the ranking quality over every threshold."""
    return float(average_precision_score(y, scores))


def at_threshold(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall and F1 of flagging ``scores >= threshold``."""
    flagged = scores >= threshold
    tp = float((flagged & (y == 1)).sum())
    precision = tp / flagged.sum() if flagged.any() else 0.0
    recall = tp / (y == 1).sum() if (y == 1).any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def threshold_for_precision(y: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The lowest threshold whose precision reaches ``target`` (the most fraud caught at that
    precision); the most precise threshold when none reaches it."""
    precision, _, thresholds = precision_recall_curve(y, scores)
    precision = precision[:-1]
    reaching = np.flatnonzero(precision >= target)
    if reaching.size:
        return float(thresholds[reaching[0]])
    return float(thresholds[int(np.argmax(precision))])


def threshold_for_recall(y: np.ndarray, scores: np.ndarray, target: float) -> float:
    """The highest threshold whose recall still reaches ``target`` (the fewest reviews)."""
    _, recall, thresholds = precision_recall_curve(y, scores)
    reaching = np.flatnonzero(recall[:-1] >= target)
    return float(thresholds[reaching[-1]]) if reaching.size else float(thresholds[0])


def baseline_rule(y: np.ndarray, amounts: np.ndarray) -> float:
    """The amount threshold with the best F1 on training events: the rules-only baseline."""
    candidates = np.unique(np.quantile(amounts, np.linspace(0.5, 0.999, 200)))
    return float(max(candidates, key=lambda c: at_threshold(y, amounts, c)["f1"]))
