"""From a model's raw outputs to answers: pooled, normalized embeddings and scores.

Plain numpy, shared by the torch and the ONNX paths so both give the same numbers.
"""

from __future__ import annotations

import numpy as np


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str) -> np.ndarray:
    """One vector per row from token states ``(rows, tokens, dim)`` under ``mask``."""
    hidden = hidden.astype(np.float32, copy=False)
    weights = mask.astype(np.float32)[:, :, None]
    if mode == "cls":
        return hidden[:, 0].copy()
    if mode == "last":
        last = np.maximum(mask.sum(axis=1) - 1, 0)
        return hidden[np.arange(len(hidden)), last].copy()
    if mode == "max":
        return np.where(weights > 0, hidden, np.float32(-1e9)).max(axis=1)
    total = (hidden * weights).sum(axis=1)
    counts = np.maximum(weights.sum(axis=1), 1e-9)
    if mode == "mean_sqrt_len":
        return total / np.sqrt(counts)
    return total / counts


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit length per row (L2), leaving all-zero rows at zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def activate(logits: np.ndarray, activation: str) -> np.ndarray:
    """Scores from logits ``(rows, labels)``: ``sigmoid``, ``softmax`` or ``none``."""
    logits = logits.astype(np.float32, copy=False)
    if activation == "sigmoid":
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    if activation == "softmax":
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
    return logits
