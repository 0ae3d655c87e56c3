"""Training, the served ``Recommender``, fold-in of new interactions, and evaluation.

The artifact is a folder: ``factors.npz`` (user and item factors, the training user×item
matrix, item popularity) and ``model.json`` (ids, hyperparameters, item attributes). Serving
uses ``implicit``'s own ``recommend`` / ``similar_items``; a user with interactions the model
has not trained on (new events, or a user it never saw) gets a vector by ALS fold-in
(``recalculate_user``: one least-squares solve against the fixed item factors), so new events
change the next answer without a retrain.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from aimass.scenarios.recommend.data import Interactions, ItemMetadata

ALGORITHMS = ("als", "bpr")
DEFAULTS: dict[str, Any] = {
    "algorithm": "als",
    "factors": 64,
    "iterations": 15,
    "regularization": 0.05,
    "alpha": 2.0,
    "learning_rate": 0.01,
    "k": 10,
    "holdout_fraction": 0.2,
    "seed": 0,
}
ARTIFACT_FACTORS, ARTIFACT_META = "factors.npz", "model.json"


def hyperparameters(given: dict[str, Any]) -> dict[str, Any]:
    """``given`` over ``DEFAULTS``; unknown names and bad values raise ValueError naming them."""
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown hyperparameter(s): {', '.join(sorted(unknown))}")
    merged = {**DEFAULTS, **given}
    if merged["algorithm"] not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {', '.join(ALGORITHMS)}")
    for name in ("factors", "iterations", "k"):
        if not isinstance(merged[name], int) or not 1 <= merged[name] <= 1024:
            raise ValueError(f"{name} must be an integer from 1 to 1024")
    if not 0 < float(merged["holdout_fraction"]) < 1:
        raise ValueError("holdout_fraction must be between 0 and 1")
    return merged


def _matrix(data: Interactions, users: dict[str, int], items: dict[str, int]) -> sp.csr_matrix:
    """User × item confidence (summed weights) over the users and items given."""
    pairs = [(users[u], items[i], w) for u, i, w in zip(data.users, data.items, data.weights,
             strict=True) if u in users and i in items]  # fmt: skip
    shape = (len(users), len(items))
    if not pairs:
        return sp.csr_matrix(shape, dtype=np.float32)
    rows, cols, weights = zip(*pairs, strict=True)
    matrix = sp.coo_matrix((np.asarray(weights, np.float32), (rows, cols)), shape=shape)
    return matrix.tocsr()


def _fit(matrix: sp.csr_matrix, params: dict[str, Any], threads: int) -> tuple[Any, Any]:
    """User and item factors from ``implicit`` (CPU); BPR's bias column is kept as trained."""
    if params["algorithm"] == "bpr":
        from implicit.cpu.bpr import BayesianPersonalizedRanking

        model = BayesianPersonalizedRanking(
            factors=params["factors"], learning_rate=float(params["learning_rate"]),
            regularization=float(params["regularization"]), iterations=params["iterations"],
            random_state=params["seed"], num_threads=threads,
        )  # fmt: skip
        model.fit(matrix.astype(np.float32), show_progress=False)
    else:
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=params["factors"], regularization=float(params["regularization"]),
            alpha=float(params["alpha"]), iterations=params["iterations"],
            random_state=params["seed"], num_threads=threads,
        )  # fmt: skip
        model.fit(matrix.astype(np.float32), show_progress=False)
    return np.asarray(model.user_factors), np.asarray(model.item_factors)


@dataclass
class Ask:
    """One recommendation request as the model takes it (see ``Recommender.recommend``)."""

    user: str
    n: int = 10
    exclude_seen: bool = True
    filters: dict[str, list[str]] = field(default_factory=dict)
    events: list[tuple[str, float]] = field(default_factory=list)


def _filter_key(filters: dict[str, list[str]]) -> tuple:
    return tuple(sorted((k, tuple(v)) for k, v in filters.items()))


@dataclass
class Recommender:
    """A trained model as served: factors, the users' training interactions, popularity."""

    user_ids: list[str]
    item_ids: list[str]
    user_factors: np.ndarray
    item_factors: np.ndarray
    seen: sp.csr_matrix
    popularity: np.ndarray
    params: dict[str, Any]
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    threads: int = 1

    def __post_init__(self) -> None:
        self.user_index = {u: i for i, u in enumerate(self.user_ids)}
        self.item_index = {i: n for n, i in enumerate(self.item_ids)}
        self._model = self._implicit()

    def _implicit(self) -> Any:
        """The ``implicit`` model holding these factors (ALS: it also does fold-in)."""
        from implicit.cpu.als import AlternatingLeastSquares

        model = AlternatingLeastSquares(
            factors=self.item_factors.shape[1], regularization=float(self.params["regularization"]),
            alpha=float(self.params["alpha"]), num_threads=self.threads,
        )  # fmt: skip
        model.user_factors = np.ascontiguousarray(self.user_factors, np.float32)
        model.item_factors = np.ascontiguousarray(self.item_factors, np.float32)
        return model

    # ---- serving ------------------------------------------------------------------------

    def allowed(self, filters: dict[str, list[str]]) -> np.ndarray | None:
        """Item indices whose attributes match every filter (None: no filter)."""
        if not filters:
            return None
        keep = [
            n for n, item in enumerate(self.item_ids)
            if all(self.attributes.get(item, {}).get(k) in v for k, v in filters.items())
        ]  # fmt: skip
        return np.asarray(keep, dtype=np.int32)

    def recommend(
        self,
        user: str,
        n: int,
        exclude_seen: bool = True,
        filters: dict[str, list[str]] | None = None,
        events: list[tuple[str, float]] | None = None,
    ) -> dict[str, Any]:
        """Top ``n`` items for ``user`` with scores; ``events`` are (item, weight) pairs the
        model has not trained on (folded in). A user with neither training data nor events
        gets the most popular items, flagged ``fallback: popularity``."""
        return self.recommend_many([Ask(user, n, exclude_seen, filters or {}, events or [])])[0]

    def recommend_many(self, asks: list[Ask]) -> list[dict[str, Any]]:
        """``recommend`` for each of ``asks``. Asks that agree on ``n``, ``exclude_seen`` and
        filters share one ``implicit`` call for all their users (one matrix product and top-k,
        and one fold-in solve for those with events), far cheaper per user than a call each."""
        answers: list[dict[str, Any]] = [{} for _ in asks]
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, ask in enumerate(asks):
            groups[(ask.n, ask.exclude_seen, _filter_key(ask.filters))].append(i)
        for (n, exclude_seen, _), members in groups.items():
            allowed = self.allowed(asks[members[0]].filters)
            n = min(n, len(self.item_ids) if allowed is None else len(allowed))
            plain, folded = [], []
            for i in members:
                ask = asks[i]
                index = self.user_index.get(ask.user)
                if index is not None and not ask.events and self._trained_on(index):
                    plain.append((i, index, None))
                    continue
                row = self._user_row(ask.user, ask.events)
                if row is None:
                    answers[i] = self._popular(ask.n, allowed, None)
                elif n <= 0:
                    answers[i] = {"items": [], "fallback": None}
                else:
                    folded.append((i, 0, row))
            if plain and n <= 0:
                for i, _, _ in plain:
                    answers[i] = {"items": [], "fallback": None}
            elif plain:
                rows = self.seen[np.asarray([index for _, index, _ in plain])]
                self._ranked(plain, rows, n, exclude_seen, allowed, False, answers)
            if folded:
                rows = sp.vstack([row for _, _, row in folded], format="csr")
                self._ranked(folded, rows, n, exclude_seen, allowed, True, answers)
        return answers

    def _ranked(
        self, members: list[tuple], rows: sp.csr_matrix, n: int, exclude_seen: bool,
        allowed: np.ndarray | None, fold_in: bool, answers: list[dict[str, Any]],
    ) -> None:  # fmt: skip
        """One ``implicit`` call for the users of ``members`` ((answer slot, user index,
        row)); ``rows`` are their interactions, one csr row each."""
        userids = np.asarray([index for _, index, _ in members])
        ids, scores = self._model.recommend(
            userids, rows, N=n, filter_already_liked_items=exclude_seen, items=allowed,
            recalculate_user=fold_in,
        )  # fmt: skip
        for (slot, _, _), row_ids, row_scores in zip(members, ids, scores, strict=True):
            items = [
                {"item": self.item_ids[i], "score": float(s)}
                for i, s in zip(row_ids, row_scores, strict=True) if np.isfinite(s)
            ]  # fmt: skip
            answers[slot] = {"items": items, "fallback": None, "folded_in": fold_in}

    def similar(self, item: str, n: int) -> list[dict[str, Any]] | None:
        """Items nearest ``item`` by cosine of item factors (None: an item never trained on)."""
        index = self.item_index.get(item)
        if index is None:
            return None
        ids, scores = self._model.similar_items(index, N=min(n + 1, len(self.item_ids)))
        return [
            {"item": self.item_ids[i], "score": float(s)}
            for i, s in zip(ids, scores, strict=True) if i != index
        ][:n]  # fmt: skip

    def _trained_on(self, index: int) -> bool:
        """Whether user ``index`` has training interactions (a stored row)."""
        return bool(self.seen.indptr[index + 1] > self.seen.indptr[index])

    def _user_row(self, user: str, events: list[tuple[str, float]]) -> sp.csr_matrix | None:
        """The user's interactions as one csr row (training ones plus ``events`` on known
        items); None when there are none."""
        index = self.user_index.get(user)
        row = self.seen[index] if index is not None else None
        extra = [(self.item_index[i], w) for i, w in events if i in self.item_index]
        if extra:
            cols, weights = zip(*extra, strict=True)
            new = sp.csr_matrix(
                (np.asarray(weights, np.float32), (np.zeros(len(cols), int), cols)),
                shape=(1, len(self.item_ids)),
            )
            row = new if row is None else (row + new).tocsr()
        if row is None or row.nnz == 0:
            return None
        return row

    def _popular(self, n: int, allowed: np.ndarray | None, seen: set[int] | None) -> dict:
        order = np.argsort(-self.popularity, kind="stable")
        if allowed is not None:
            order = order[np.isin(order, allowed)]
        picked = [i for i in order if not seen or i not in seen][:n]
        items = [{"item": self.item_ids[i], "score": float(self.popularity[i])} for i in picked]
        return {"items": items, "fallback": "popularity", "folded_in": False}

    # ---- the artifact -------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(
            folder / ARTIFACT_FACTORS,
            user_factors=self.user_factors, item_factors=self.item_factors,
            popularity=self.popularity, seen_data=self.seen.data, seen_indices=self.seen.indices,
            seen_indptr=self.seen.indptr,
        )  # fmt: skip
        meta = {"users": self.user_ids, "items": self.item_ids, "params": self.params,
                "attributes": self.attributes}  # fmt: skip
        (folder / ARTIFACT_META).write_text(json.dumps(meta))

    @classmethod
    def load(cls, folder: Path, threads: int = 1) -> Recommender:
        meta = json.loads((folder / ARTIFACT_META).read_text())
        with np.load(folder / ARTIFACT_FACTORS, allow_pickle=False) as f:
            shape = (len(meta["users"]), len(meta["items"]))
            seen = sp.csr_matrix((f["seen_data"], f["seen_indices"], f["seen_indptr"]), shape)
            return cls(
                meta["users"], meta["items"], f["user_factors"], f["item_factors"], seen,
                f["popularity"], meta["params"], meta["attributes"], threads,
            )  # fmt: skip


def train(
    data: Interactions, params: dict[str, Any], metadata: ItemMetadata | None = None,
    threads: int = 1,
) -> Recommender:  # fmt: skip
    """A ``Recommender`` fit on every interaction of ``data``."""
    users = {u: i for i, u in enumerate(dict.fromkeys(data.users))}
    items = {i: n for n, i in enumerate(dict.fromkeys(data.items))}
    matrix = _matrix(data, users, items)
    user_factors, item_factors = _fit(matrix, params, threads)
    popularity = np.asarray((matrix > 0).sum(axis=0)).ravel().astype(np.float32)
    attributes = {i: a for i, a in (metadata.attributes if metadata else {}).items() if i in items}
    return Recommender(
        list(users), list(items), user_factors, item_factors, matrix, popularity, params,
        attributes, threads,
    )  # fmt: skip


# ---- evaluation ----------------------------------------------------------------------------


@dataclass
class Split:
    """A time-based hold-out: training interactions before ``cut``, and for each user seen in
    training the items first touched after it."""

    train: Interactions
    test: dict[str, set[str]]
    cut: float


def time_split(data: Interactions, fraction: float) -> Split:
    """Hold out the latest ``fraction`` of interactions (by timestamp; by line without one)."""
    cut = float(np.quantile(data.times, 1 - fraction))
    before = data.times <= cut
    train = data.subset(before)
    known_items = set(train.items)
    seen: dict[str, set[str]] = defaultdict(set)
    for u, i in zip(train.users, train.items, strict=True):
        seen[u].add(i)
    test: dict[str, set[str]] = defaultdict(set)
    for u, i, late in zip(data.users, data.items, ~before, strict=True):
        if late and u in seen and i in known_items and i not in seen[u]:
            test[u].add(i)
    if not test:
        raise ValueError(
            "the time-based hold-out is empty: no user of the earlier interactions touched a "
            "new known item later (more interactions, or timestamps, are needed)"
        )
    return Split(train, dict(test), cut)


def ranking_metrics(ranked: dict[str, list[str]], test: dict[str, set[str]], k: int) -> dict:
    """Mean precision@k, recall@k and nDCG@k (binary relevance) over the users of ``test``."""
    precision, recall, ndcg = [], [], []
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    for user, relevant in test.items():
        top = ranked.get(user, [])[:k]
        hits = np.asarray([item in relevant for item in top], float)
        precision.append(hits.sum() / k)
        recall.append(hits.sum() / len(relevant))
        ideal = discounts[: min(len(relevant), k)].sum()
        ndcg.append(float((hits * discounts[: len(hits)]).sum() / ideal))
    return {
        f"precision@{k}": float(np.mean(precision)),
        f"recall@{k}": float(np.mean(recall)),
        f"ndcg@{k}": float(np.mean(ndcg)),
        "users": len(test),
    }


def evaluate(model: Recommender, split: Split, k: int) -> dict[str, float]:
    """``model``'s metrics on ``split``: each test user's top k, their training items excluded
    (folded in from the split's training interactions when the model lacks the user)."""
    by_user: dict[str, list[tuple[str, float]]] = defaultdict(list)
    for u, i, w in zip(split.train.users, split.train.items, split.train.weights, strict=True):
        by_user[u].append((i, float(w)))
    ranked = {}
    for user in split.test:
        known = user in model.user_index
        answer = model.recommend(user, k, True, None, None if known else by_user[user])
        seen = {i for i, _ in by_user[user]}
        ranked[user] = [x["item"] for x in answer["items"] if x["item"] not in seen]
    return ranking_metrics(ranked, split.test, k)


def evaluate_popularity(split: Split, k: int) -> dict[str, float]:
    """The baseline: every user gets the most popular training items they have not touched."""
    counts: dict[str, int] = defaultdict(int)
    seen: dict[str, set[str]] = defaultdict(set)
    for u, i in zip(split.train.users, split.train.items, strict=True):
        if i not in seen[u]:
            counts[i] += 1
            seen[u].add(i)
    order = sorted(counts, key=lambda i: -counts[i])
    ranked = {u: [i for i in order if i not in seen[u]][:k] for u in split.test}
    return ranking_metrics(ranked, split.test, k)
