"""Deployment policies without worker processes: split requests and the restart schedule."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from aimass.engine.batcher import Batcher
from aimass.engine.deployment import FAILED, READY, Deployment, Supervision
from aimass.errors import QueueFull
from aimass.spec import ModelSpec
from tests.unit.test_batcher import HeldReplica


def spec(**overrides) -> ModelSpec:
    data = {"name": "m", "runtime": "onnx", "source": "x.onnx", **overrides}
    return ModelSpec.model_validate(data)


def serving(model: ModelSpec) -> tuple[Deployment, HeldReplica]:
    """A READY deployment over one held replica (no process is started)."""
    dep = Deployment(model, Supervision())
    replica = HeldReplica()
    dep._pool.add(replica)
    dep._batcher = Batcher(model, dep._pool)
    dep.state = READY
    return dep, replica


async def test_a_split_request_leaves_the_queue_when_one_chunk_is_refused():
    model = spec(batching={"max_batch_size": 1}, limits={"max_queue": 2})
    dep, replica = serving(model)
    x = {"x": np.arange(5, dtype=np.float32).reshape(-1, 1)}
    with pytest.raises(QueueFull):
        await dep.infer(x)
    # One chunk reached the replica, two filled the queue, the rest were refused: the
    # queued siblings must go too, since the client already has its 429.
    await replica.started.wait()
    assert dep.queue_depth == 0
    replica.release.set()
    await asyncio.sleep(0)
    assert len(replica.batches) == 1
    await dep._batcher.close(QueueFull("closed"))


async def test_a_split_request_is_answered_in_order():
    model = spec(batching={"max_batch_size": 2}, limits={"max_queue": 8})
    dep, replica = serving(model)
    replica.release.set()
    x = {"x": np.arange(5, dtype=np.float32).reshape(-1, 1)}
    out = await dep.infer(x)
    assert out["y"].ravel().tolist() == [0, 2, 4, 6, 8]
    assert [len(b["x"]) for b in replica.batches] == [2, 2, 1]
    await dep._batcher.close(QueueFull("closed"))


async def test_restarts_back_off_exponentially_then_give_up():
    sup = Supervision(backoff_s=0.5, backoff_max_s=3.0, max_restarts=4)
    dep = Deployment(spec(), sup)
    dep.state = READY
    delays: list[float] = []

    async def fake_restart(index: int, delay: float) -> None:
        delays.append(delay)

    dep._restart = fake_restart
    for _ in range(5):
        dep._schedule_restart(0, "replica 0 worker killed by signal 9")
        await asyncio.sleep(0)
    await asyncio.gather(*dep._restart_tasks)
    assert delays == [0.5, 1.0, 2.0, 3.0]
    assert dep.state == FAILED
    assert "gave up after 4 restarts" in dep.last_error
    assert "signal 9" in dep.last_error


async def test_admit_refuses_a_full_queue_before_any_work():
    model = spec(batching={"max_batch_size": 1}, limits={"max_queue": 1})
    dep, replica = serving(model)
    x = {"x": np.ones((1, 1), np.float32)}
    running = asyncio.ensure_future(dep.infer(x))
    await replica.started.wait()
    queued = asyncio.ensure_future(dep.infer(x))
    await asyncio.sleep(0)
    assert dep.queue_depth == 1
    with pytest.raises(QueueFull, match=r"limits\.max_queue"):
        dep.admit()
    replica.release.set()
    await asyncio.gather(running, queued)
    dep.admit()  # room again
    await dep._batcher.close(QueueFull("closed"))
