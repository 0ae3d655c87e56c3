"""Searches that overlap adds and deletes: usearch is called from worker threads (index.py),
so nothing may crash, and a deleted file's chunks are never found once its delete returned."""

from __future__ import annotations

import asyncio
import threading

import numpy as np

from aimass.search import records
from aimass.search.index import VectorIndex
from aimass.search.store import Stores

DIMS = 16


def test_threads_search_add_and_remove_one_index_at_once(tmp_path):
    index = VectorIndex(tmp_path / "i.usearch", DIMS)
    rng = np.random.default_rng(0)
    base = rng.standard_normal((500, DIMS)).astype(np.float32)
    index.add(np.arange(500), base)
    errors: list[BaseException] = []
    stop = threading.Event()

    def search() -> None:
        queries = np.random.default_rng(1).standard_normal((8, DIMS)).astype(np.float32)
        try:
            while not stop.is_set():
                for keys, scores in index.search_many(queries, 10):
                    assert len(keys) == len(scores) <= 10
                keys, _ = index.search(queries[0], 5)
                assert len(keys) <= 5
        except BaseException as exc:
            errors.append(exc)

    def churn(offset: int) -> None:
        local = np.random.default_rng(offset)
        try:
            for round_ in range(30):
                keys = np.arange(offset + round_ * 20, offset + round_ * 20 + 20)
                index.add(keys, local.standard_normal((20, DIMS)).astype(np.float32))
                index.remove(keys[::2])
        except BaseException as exc:
            errors.append(exc)

    searchers = [threading.Thread(target=search) for _ in range(3)]
    writers = [threading.Thread(target=churn, args=(o,)) for o in (10_000, 20_000)]
    for t in searchers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in searchers:
        t.join()
    assert not errors, errors
    assert len(index) == 500 + 2 * 30 * 10
    found, _ = index.search(base[3], 1)
    assert found.tolist() == [3]


async def test_a_deleted_file_is_never_found_after_its_delete_returns(tmp_path):
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    made = records.create_store(
        url, owner_key_id=None, name="s", embedding_model="m", metadata={},
        expires_after_days=None,
    )  # fmt: skip
    stores = Stores(url, tmp_path / "stores")
    rng = np.random.default_rng(2)
    centre = rng.standard_normal(DIMS).astype(np.float32)
    files = [f"file-{n}" for n in range(6)]
    for file_id in files:
        records.add_file(url, made.id, file_id, attributes={}, max_chunk_tokens=100,
                         chunk_overlap_tokens=0)  # fmt: skip
    live = await stores.get(made)
    deleted: set[str] = set()
    seen_deleted: list[str] = []
    searches = 0
    done = asyncio.Event()

    async def search() -> None:
        nonlocal searches
        while not done.is_set():
            gone = set(deleted)  # deletes acknowledged before this search began
            hits = await live.vector_search(centre, 20)
            seen_deleted.extend(h.file_id for h in hits if h.file_id in gone)
            searches += 1
            await asyncio.sleep(0)  # a search of an empty store does not yield

    async def change() -> None:
        for n, file_id in enumerate(files):
            chunks = [
                records.NewChunk(i, f"{file_id} {i}", 2, centre + 0.1 * rng.standard_normal(DIMS))
                for i in range(40)
            ]
            assert await stores.add_file(made, file_id, {}, chunks, usage=1)
            if n % 2:
                assert await stores.remove_file(made, files[n - 1])
                deleted.add(files[n - 1])
        done.set()

    await asyncio.gather(change(), *(search() for _ in range(4)))
    assert searches > 10 and not seen_deleted, (searches, seen_deleted)
    left = {h.file_id for h in await live.vector_search(centre, 200)}
    assert left == set(files) - deleted
