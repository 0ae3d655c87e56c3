"""Log-probabilities of generated tokens, as OpenAI reports them.

Computed from the raw logits of the sampled position (the log-softmax over the whole
vocabulary, before penalties, grammar, temperature or truncation): what the model thought,
not what the sampler was allowed to pick. The top alternatives are the ``top`` most likely
tokens at that position, most likely first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

MAX_TOP_LOGPROBS = 20


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - float(logits.max())
    return shifted - np.log(np.exp(shifted).sum())


def token_logprob(
    logits: np.ndarray, token: int, top: int, piece: Callable[[int], bytes]
) -> dict[str, Any]:
    """The ``TokenLogprob`` of ``token`` (see ``engine/local/messages.py``) as a plain dict."""
    logp = log_softmax(logits)
    alternatives: list[dict[str, Any]] = []
    if top > 0:
        best = np.argpartition(-logp, top - 1)[:top]
        best = best[np.argsort(-logp[best], kind="stable")]
        alternatives = [_entry(int(t), float(logp[t]), piece) for t in best]
    return {**_entry(token, float(logp[token]), piece), "top_logprobs": alternatives}


def _entry(token: int, logprob: float, piece: Callable[[int], bytes]) -> dict[str, Any]:
    raw = piece(token)
    return {"token": raw.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(raw)}
