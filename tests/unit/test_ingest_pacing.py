"""How ingestion paces its embedding requests: full batches several at a time when the store is
quiet (per file, several files at once), one tiny request at a time for all files together
while searches run, vectors in order, and the first error stops the rest."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from aimass.errors import TooManyRequests
from aimass.search.ingest import BUSY_BATCH, Ingestor, Work


class Model:
    """Embeds each text as its number; records request sizes and the most in flight at once."""

    def __init__(self, fail_at: int | None = None):
        self.sizes: list[int] = []
        self.in_flight = self.most = 0
        self.fail_at = fail_at
        self.busy = False

    async def embed(self, store, texts: list[str]) -> np.ndarray:
        self.sizes.append(len(texts))
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            if self.fail_at is not None and str(self.fail_at) in texts:
                raise TooManyRequests("model queue full")
            return np.array([[float(t)] for t in texts])
        finally:
            self.in_flight -= 1


def ingestor(model: Model) -> Ingestor:
    def unused(*_):
        raise AssertionError("not called")

    work = Work(unused, unused, model.embed, lambda store: model.busy, unused)
    return Ingestor(None, work, concurrency=1, embed_batch=8, in_flight=3)


async def test_a_quiet_store_gets_full_batches_several_at_once_in_order():
    model = Model()
    vectors = await ingestor(model)._embed_all(None, [str(i) for i in range(50)])
    assert model.sizes == [8] * 6 + [2] and model.most == 3
    assert [float(b[0]) for block in vectors for b in block] == list(range(50))


async def test_while_searches_run_one_tiny_request_at_a_time():
    model = Model()
    model.busy = True
    vectors = await ingestor(model)._embed_all(None, [str(i) for i in range(9)])
    assert model.sizes == [BUSY_BATCH] * 4 + [1] and model.most == 1
    assert [float(b[0]) for block in vectors for b in block] == list(range(9))


async def test_while_searches_run_several_files_share_one_request_at_a_time():
    model = Model()
    model.busy = True
    ingest = ingestor(model)
    files = [[str(i) for i in range(start, start + 5)] for start in (0, 100, 200)]
    found = await asyncio.gather(*(ingest._embed_all(None, texts) for texts in files))
    assert model.most == 1 and sum(model.sizes) == 15
    for texts, vectors in zip(files, found, strict=True):
        assert [float(b[0]) for block in vectors for b in block] == [float(t) for t in texts]


async def test_quiet_files_at_once_each_keep_their_requests_in_flight():
    model = Model()
    ingest = ingestor(model)
    await asyncio.gather(*(ingest._embed_all(None, [str(i) for i in range(24)]) for _ in "ab"))
    assert model.most == 6  # 3 in flight per file, both files at once


async def test_the_first_error_is_raised_and_the_rest_cancelled():
    model = Model(fail_at=20)
    with pytest.raises(TooManyRequests):
        await ingestor(model)._embed_all(None, [str(i) for i in range(200)])
    assert model.in_flight == 0 and sum(model.sizes) < 200
