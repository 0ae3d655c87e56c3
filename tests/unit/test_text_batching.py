"""Token-budget planning and padding, and the numpy pooling shared by both backends."""

from __future__ import annotations

import numpy as np
import pytest

from aimass.runtimes.text.batching import pad_rows, plan_batches
from aimass.runtimes.text.pooling import activate, normalize, pool


def _padded_cost(lengths: np.ndarray, group: np.ndarray) -> int:
    return len(group) * int(lengths[group].max())


@pytest.mark.parametrize("seed", range(5))
def test_every_row_once_and_padding_within_budget(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 60, size=100)
    groups = plan_batches(lengths, max_tokens=256)
    assert sorted(np.concatenate(groups).tolist()) == list(range(100))
    assert all(_padded_cost(lengths, g) <= 256 for g in groups)


def test_rows_are_ordered_by_length_to_cut_padding():
    lengths = np.array([30, 2, 29, 3, 31, 1])
    groups = plan_batches(lengths, max_tokens=9)
    assert [lengths[g].tolist() for g in groups] == [[1, 2, 3], [29], [30], [31]]
    padding_sorted = sum(_padded_cost(lengths, g) for g in plan_batches(lengths, 64))
    assert padding_sorted < len(lengths) * lengths.max()


def test_a_row_longer_than_the_budget_runs_alone_and_rows_cap_applies():
    assert [g.tolist() for g in plan_batches(np.array([5, 500]), max_tokens=100)] == [[0], [1]]
    groups = plan_batches(np.full(10, 4), max_tokens=None, max_rows=4)
    assert [len(g) for g in groups] == [4, 4, 2]
    assert plan_batches(np.array([], dtype=np.int64), 100) == []


def test_pad_rows_masks_padding():
    feeds = pad_rows([[1, 2, 3], [4]], [[0, 0, 1], [0]], pad_id=9)
    assert feeds["input_ids"].tolist() == [[1, 2, 3], [4, 9, 9]]
    assert feeds["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert feeds["token_type_ids"].tolist() == [[0, 0, 1], [0, 0, 0]]


def test_pooling_modes_ignore_padding():
    hidden = np.arange(2 * 3 * 2, dtype=np.float32).reshape(2, 3, 2)
    mask = np.array([[1, 1, 1], [1, 1, 0]])
    np.testing.assert_allclose(pool(hidden, mask, "mean"), [[2, 3], [7, 8]])
    np.testing.assert_allclose(pool(hidden, mask, "cls"), [[0, 1], [6, 7]])
    np.testing.assert_allclose(pool(hidden, mask, "last"), [[4, 5], [8, 9]])
    np.testing.assert_allclose(pool(hidden, mask, "max"), [[4, 5], [8, 9]])
    np.testing.assert_allclose(
        pool(hidden, mask, "mean_sqrt_len")[1], np.array([14, 16]) / np.sqrt(2)
    )


def test_normalize_and_activations():
    np.testing.assert_allclose(normalize(np.array([[3.0, 4.0], [0.0, 0.0]])), [[0.6, 0.8], [0, 0]])
    logits = np.array([[0.0, np.log(3.0)]], dtype=np.float32)
    np.testing.assert_allclose(activate(logits, "softmax"), [[0.25, 0.75]], rtol=1e-6)
    np.testing.assert_allclose(activate(logits, "sigmoid"), [[0.5, 0.75]], rtol=1e-6)
    assert activate(logits, "none") is not None and activate(logits, "none")[0, 0] == 0
