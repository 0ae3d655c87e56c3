"""The batcher, driven with held events instead of sleeps."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from aimass.engine.batcher import COST_KEY, Batcher
from aimass.engine.pool import ReplicaPool
from aimass.errors import DeadlineExceeded, InvalidInput, QueueFull, Unavailable
from aimass.runtimes.base import ROW_ERRORS
from aimass.spec import ModelSpec


class HeldReplica:
    """A replica whose batches finish only when the test releases them."""

    def __init__(self) -> None:
        self.alive = True
        self.batches: list[dict] = []
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.fail_with: Exception | None = None
        self.row_errors: dict[int, str] = {}

    @property
    def busy(self) -> int:
        return 0

    async def submit(self, batch):
        self.batches.append(batch)
        self.started.set()
        await self.release.wait()
        if self.fail_with is not None:
            raise self.fail_with
        out = {"y": batch["x"] * 2}
        if self.row_errors:
            out[ROW_ERRORS] = [self.row_errors.get(i) for i in range(len(batch["x"]))]
        return out


def make(
    max_batch_size=4,
    max_delay_ms=0.0,
    max_queue=8,
    max_batch_tokens=None,
    replicas=1,
    online_replicas=0,
):
    spec = ModelSpec(
        name="m",
        runtime="onnx",
        source="x.onnx",
        batching={
            "max_batch_size": max_batch_size,
            "max_delay_ms": max_delay_ms,
            "max_batch_tokens": max_batch_tokens,
            "online_replicas": online_replicas,
        },
        limits={"max_queue": max_queue},
    )
    pool = ReplicaPool()
    reps = [HeldReplica() for _ in range(replicas)]
    for r in reps:
        pool.add(r)
    return Batcher(spec, pool), reps


def rows(*values):
    return {"x": np.array(values, dtype=np.float32).reshape(-1, 1)}


def far():
    return time.monotonic() + 30


async def wait_queued(batcher, n):
    while batcher.depth != n:
        await asyncio.sleep(0)


async def test_requests_queued_while_busy_merge_into_one_batch():
    batcher, (rep,) = make(max_batch_size=8)
    first = asyncio.create_task(batcher.submit(rows(1), 1, far()))
    await rep.started.wait()
    later = [asyncio.create_task(batcher.submit(rows(i, i), 2, far())) for i in (2, 3, 4)]
    await wait_queued(batcher, 3)
    rep.release.set()
    assert (await first)["y"].ravel().tolist() == [2]
    results = [r["y"].ravel().tolist() for r in await asyncio.gather(*later)]
    assert results == [[4, 4], [6, 6], [8, 8]]
    assert [len(b["x"]) for b in rep.batches] == [1, 6]


async def test_online_requests_pass_queued_background_ones_and_are_batched_alone():
    """Ingestion's requests were queued first; the search's query still goes next, on its
    own (not padded to their length), and the background ones follow together."""
    batcher, (rep,) = make(max_batch_size=8)
    first = asyncio.create_task(batcher.submit(rows(0), 1, far(), background=True))
    await rep.started.wait()
    background = [
        asyncio.create_task(batcher.submit(rows(i, i), 2, far(), background=True)) for i in (1, 2)
    ]
    await wait_queued(batcher, 2)
    online = asyncio.create_task(batcher.submit(rows(9), 1, far()))
    await wait_queued(batcher, 3)
    rep.release.set()
    await asyncio.gather(first, online, *background)
    assert [b["x"].ravel().tolist() for b in rep.batches] == [[0], [9], [1, 1, 2, 2]]


async def test_a_replica_kept_for_online_requests_takes_no_background_batch():
    """online_replicas=1 of 2, online traffic running: a background batch waits while only one
    replica is free, an online request takes that replica at once, and the background batch
    runs once a second replica is free."""
    batcher, (a, b) = make(max_batch_size=1, replicas=2, online_replicas=1)
    online0 = asyncio.create_task(batcher.submit(rows(1), 1, far()))
    await a.started.wait()
    held = asyncio.create_task(batcher.submit(rows(2), 1, far(), background=True))
    await wait_queued(batcher, 1)
    for _ in range(20):
        await asyncio.sleep(0)
    assert not b.batches and batcher.depth == 1
    online1 = asyncio.create_task(batcher.submit(rows(3), 1, far()))
    await b.started.wait()
    assert b.batches[0]["x"].tolist() == [[3.0]]
    b.release.set()
    assert (await online1)["y"].tolist() == [[6.0]]
    for _ in range(20):
        await asyncio.sleep(0)
    assert not held.done() and len(a.batches) + len(b.batches) == 2
    a.release.set()
    assert (await online0)["y"].tolist() == [[2.0]]
    assert (await held)["y"].tolist() == [[4.0]]


async def test_without_online_traffic_background_batches_take_every_replica():
    batcher, reps = make(max_batch_size=1, replicas=2, online_replicas=1)
    jobs = [asyncio.create_task(batcher.submit(rows(n), 1, far(), background=True)) for n in (1, 2)]
    for rep in reps:
        await rep.started.wait()
        rep.release.set()
    assert [(await j)["y"].tolist() for j in jobs] == [[[2.0]], [[4.0]]]


async def test_rows_not_requests_are_counted():
    batcher, (rep,) = make(max_batch_size=4)
    blocker = asyncio.create_task(batcher.submit(rows(0), 1, far()))
    await rep.started.wait()
    tasks = [asyncio.create_task(batcher.submit(rows(1, 1, 1), 3, far())) for _ in range(2)]
    await wait_queued(batcher, 2)
    rep.release.set()
    await asyncio.gather(blocker, *tasks)
    assert [len(b["x"]) for b in rep.batches] == [1, 3, 3]


async def test_max_delay_waits_for_more_then_dispatches_full_batch_early():
    batcher, (rep,) = make(max_batch_size=2, max_delay_ms=10_000)
    rep.release.set()
    one = asyncio.create_task(batcher.submit(rows(1), 1, far()))
    await wait_queued(batcher, 1)
    await asyncio.sleep(0.01)
    assert not rep.batches, "a non-full batch must wait up to max_delay_ms"
    two = asyncio.create_task(batcher.submit(rows(2), 1, far()))
    await asyncio.gather(one, two)
    assert [len(b["x"]) for b in rep.batches] == [2]


async def test_full_queue_is_refused_at_once_with_retry_after():
    batcher, (rep,) = make(max_queue=2)
    busy = asyncio.create_task(batcher.submit(rows(0), 1, far()))
    await rep.started.wait()
    queued = [asyncio.create_task(batcher.submit(rows(1), 1, far())) for _ in range(2)]
    await wait_queued(batcher, 2)
    with pytest.raises(QueueFull) as err:
        await batcher.submit(rows(9), 1, far())
    assert "max_queue" in err.value.message
    assert err.value.headers["Retry-After"] == "1"
    rep.release.set()
    await asyncio.gather(busy, *queued)


async def test_expired_requests_never_reach_the_model():
    batcher, (rep,) = make()
    busy = asyncio.create_task(batcher.submit(rows(0), 1, far()))
    await rep.started.wait()
    with pytest.raises(DeadlineExceeded):
        await batcher.submit(rows(5), 1, time.monotonic() + 0.05)
    rep.release.set()
    await busy
    await asyncio.sleep(0)
    assert all(5 not in b["x"] for b in rep.batches)
    assert batcher.depth == 0


async def test_cancelled_request_is_removed_from_the_queue():
    batcher, (rep,) = make()
    busy = asyncio.create_task(batcher.submit(rows(0), 1, far()))
    await rep.started.wait()
    gone = asyncio.create_task(batcher.submit(rows(7), 1, far()))
    await wait_queued(batcher, 1)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert batcher.depth == 0
    rep.release.set()
    await busy
    assert [b["x"].ravel().tolist() for b in rep.batches] == [[0]]


async def test_replica_failure_fails_every_request_of_the_batch():
    batcher, (rep,) = make()
    rep.fail_with = Unavailable("replica crashed")
    rep.release.set()
    results = await asyncio.gather(
        *(batcher.submit(rows(i), 1, far()) for i in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, Unavailable) for r in results)


async def test_row_errors_fail_only_their_request():
    batcher, (rep,) = make(max_batch_size=8)
    busy = asyncio.create_task(batcher.submit(rows(0), 1, far()))
    await rep.started.wait()
    good = asyncio.create_task(batcher.submit(rows(1), 1, far()))
    bad = asyncio.create_task(batcher.submit(rows(2, 3), 2, far()))
    await wait_queued(batcher, 2)
    rep.row_errors = {2: "text too long (max_tokens=8)"}
    rep.release.set()
    await busy
    assert (await good)["y"].ravel().tolist() == [2]
    with pytest.raises(InvalidInput, match="too long"):
        await bad


async def test_token_budget_counts_padding():
    batcher, (rep,) = make(max_batch_size=64, max_batch_tokens=40)
    busy = asyncio.create_task(batcher.submit(rows(0), 1, far()))
    await rep.started.wait()

    def text(n_rows, length):
        p = rows(*range(n_rows))
        p[COST_KEY] = np.full(n_rows, length, dtype=np.int64)
        return p

    # 2 rows of 10 tokens, then 1 row of 20: padded 3 x 20 = 60 > 40, so it waits.
    a = asyncio.create_task(batcher.submit(text(2, 10), 2, far()))
    b = asyncio.create_task(batcher.submit(text(1, 20), 1, far()))
    await wait_queued(batcher, 2)
    rep.release.set()
    await asyncio.gather(busy, a, b)
    assert [len(x["x"]) for x in rep.batches] == [1, 2, 1]
    assert all(COST_KEY not in x for x in rep.batches)


async def test_incompatible_shapes_are_not_merged():
    batcher, (rep,) = make(max_batch_size=8)
    busy = asyncio.create_task(batcher.submit(rows(0), 1, far()))
    await rep.started.wait()
    narrow = asyncio.create_task(batcher.submit(rows(1), 1, far()))
    wide = asyncio.create_task(batcher.submit({"x": np.ones((1, 3), np.float32)}, 1, far()))
    await wait_queued(batcher, 2)
    rep.release.set()
    await asyncio.gather(busy, narrow, wide)
    assert [b["x"].shape for b in rep.batches] == [(1, 1), (1, 1), (1, 3)]


async def test_two_replicas_run_batches_at_the_same_time():
    batcher, reps = make(max_batch_size=1, replicas=2)
    tasks = [asyncio.create_task(batcher.submit(rows(i), 1, far())) for i in range(2)]
    await asyncio.gather(reps[0].started.wait(), reps[1].started.wait())
    for r in reps:
        r.release.set()
    await asyncio.gather(*tasks)
