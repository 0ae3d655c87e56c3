"""Reciprocal rank fusion: one ranking from several, by rank alone (Cormack et al., 2009).

Each list gives a document ``1 / (k + rank)`` (rank from 1); scores add up across lists. The
fused score is divided by its largest possible value (first in every list), so it lies in
(0, 1] like the other modes' scores and a ``score_threshold`` means the same kind of thing.
"""

from __future__ import annotations

from collections.abc import Sequence

RRF_K = 60
"""The constant of the original paper; it damps the weight of the very first ranks."""


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: int = RRF_K
) -> list[tuple[int, float]]:
    """``(id, score)`` best first, from rankings of ids (each best first)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    best = len(rankings) / (k + 1) if rankings else 1.0
    fused = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return [(key, score / best) for key, score in fused]
