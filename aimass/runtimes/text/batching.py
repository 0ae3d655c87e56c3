"""Token-budget batching inside the replica: sort rows by length, cut, pad.

The batcher hands a replica up to ``max_batch_size`` rows. Padding every row to the longest
one wastes compute when lengths differ, and one huge padded tensor can exhaust memory, so
the rows are ordered by length and split into sub-batches whose padded size (rows × longest
row) stays within ``max_batch_tokens``. A single row longer than the budget runs alone.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plan_batches(
    lengths: np.ndarray, max_tokens: int | None, max_rows: int | None = None
) -> list[np.ndarray]:
    """Row indexes per sub-batch, shortest rows first; padding counts against ``max_tokens``."""
    order = np.argsort(lengths, kind="stable")
    groups: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        if end == len(order):
            groups.append(order[start:end])
            break
        rows, longest = end + 1 - start, int(lengths[order[end]])
        over_tokens = max_tokens is not None and rows * longest > max_tokens
        over_rows = max_rows is not None and rows > max_rows
        if over_tokens or over_rows:
            groups.append(order[start:end])
            start = end
    return [g for g in groups if len(g)]


def pad_rows(
    ids: Sequence[Sequence[int]], type_ids: Sequence[Sequence[int]], pad_id: int
) -> dict[str, np.ndarray]:
    """Right-padded ``input_ids``, ``attention_mask`` and ``token_type_ids`` (int64)."""
    longest = max((len(r) for r in ids), default=0)
    shape = (len(ids), max(longest, 1))
    input_ids = np.full(shape, pad_id, dtype=np.int64)
    mask = np.zeros(shape, dtype=np.int64)
    types = np.zeros(shape, dtype=np.int64)
    for r, (row, row_types) in enumerate(zip(ids, type_ids, strict=True)):
        input_ids[r, : len(row)] = row
        mask[r, : len(row)] = 1
        types[r, : len(row_types)] = row_types
    return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": types}
