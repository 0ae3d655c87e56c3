"""The evaluation metrics of each method, computed the same way for the new version and the
serving one (numpy; scikit-learn for AUC). Names are what ``registry.evaluations`` compares:
``rmse`` and ``log_loss`` are better lower, every other metric higher."""

from __future__ import annotations

import math

import numpy as np

RANK_CUTOFF = 10


def retrieval(query_vectors: np.ndarray, doc_vectors: np.ndarray, relevant: list[int]) -> dict:
    """recall@1, recall@5, MRR and nDCG@10 of each query's one relevant document among all
    documents (vectors normalized here, so cosine similarity)."""
    q = _unit(query_vectors)
    d = _unit(doc_vectors)
    scores = q @ d.T
    target = scores[np.arange(len(relevant)), relevant]
    ranks = (scores > target[:, None]).sum(axis=1) + 1
    return {
        "recall@1": float(np.mean(ranks <= 1)),
        "recall@5": float(np.mean(ranks <= 5)),
        "mrr": float(np.mean(1.0 / ranks)),
        "ndcg@10": float(
            np.mean([1 / math.log2(r + 1) if r <= RANK_CUTOFF else 0.0 for r in ranks])
        ),
    }


def classification(proba: np.ndarray, truth: np.ndarray) -> dict:
    """accuracy, macro-F1, log loss, and AUC (two classes; one-vs-rest macro AUC for more,
    when every class occurs in ``truth``)."""
    from sklearn.metrics import f1_score, log_loss, roc_auc_score

    n = proba.shape[1]
    predicted = proba.argmax(axis=1)
    result = {
        "accuracy": float(np.mean(predicted == truth)),
        "macro_f1": float(f1_score(truth, predicted, average="macro", labels=list(range(n)))),
        "log_loss": float(log_loss(truth, np.clip(proba, 1e-7, 1), labels=list(range(n)))),
    }
    if len(set(truth.tolist())) == n and n >= 2:
        if n == 2:
            result["auc"] = float(roc_auc_score(truth, proba[:, 1]))
        else:
            result["auc"] = float(roc_auc_score(truth, proba, multi_class="ovr"))
    return result


def regression(predicted: np.ndarray, truth: np.ndarray) -> dict:
    error = np.asarray(predicted, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
