"""Deployment policies without worker processes: split requests, admission and the restart
schedule."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from aimass.engine.batcher import Batcher
from aimass.engine.deployment import FAILED, READY, Deployment, Supervision
from aimass.errors import DeadlineExceeded, InvalidInput, QueueFull
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


async def test_a_split_request_counts_once_against_the_queue():
    """Five chunks on a queue of one: an idle model admits the request whole, and while its
    chunks wait the next request is refused, naming how many wait (issue 16)."""
    model = spec(batching={"max_batch_size": 1}, limits={"max_queue": 1})
    dep, replica = serving(model)
    x = {"x": np.arange(5, dtype=np.float32).reshape(-1, 1)}
    call = asyncio.ensure_future(dep.infer(x))
    await replica.started.wait()
    assert dep.queue_depth == 1
    with pytest.raises(QueueFull, match=r"1 requests are waiting and limits\.max_queue is 1"):
        dep.admit()
    replica.release.set()
    assert (await call)["y"].ravel().tolist() == [0, 2, 4, 6, 8]
    assert [len(b["x"]) for b in replica.batches] == [1] * 5
    assert dep.queue_depth == 0
    await dep._batcher.close(QueueFull("closed"))


async def test_a_split_request_stops_at_its_first_failed_chunk():
    """The client has its 400 after the first chunk: the chunks still queued never run."""
    model = spec(batching={"max_batch_size": 2}, limits={"max_queue": 8})
    dep, replica = serving(model)
    replica.row_errors = {1: "input[1] is too long"}
    x = {"x": np.arange(6, dtype=np.float32).reshape(-1, 1)}
    call = asyncio.ensure_future(dep.infer(x))
    await replica.started.wait()
    replica.release.set()
    with pytest.raises(InvalidInput, match="too long"):
        await call
    await asyncio.sleep(0.01)
    assert len(replica.batches) == 1
    assert dep.queue_depth == 0
    await dep._batcher.close(QueueFull("closed"))


async def test_a_split_request_past_its_deadline_leaves_the_queue():
    model = spec(batching={"max_batch_size": 1}, limits={"max_queue": 8})
    dep, replica = serving(model)
    running = asyncio.ensure_future(dep.infer({"x": np.ones((1, 1), np.float32)}))
    await replica.started.wait()
    with pytest.raises(DeadlineExceeded):
        await dep.infer({"x": np.ones((3, 1), np.float32)}, timeout_s=0.05)
    assert dep.queue_depth == 0
    replica.release.set()
    await running
    await asyncio.sleep(0.01)
    assert len(replica.batches) == 1
    await dep._batcher.close(QueueFull("closed"))


async def test_a_payload_that_cannot_reach_a_replica_is_refused_alone():
    """Token ids beyond 64 bits cannot be carried to the worker: this request's 400, found
    before batching, so the requests it would have shared a batch with are unaffected."""
    dep, replica = serving(spec(limits={"max_queue": 8}))
    ids = np.empty(1, dtype=object)
    ids[0] = [1, 2**70]
    with pytest.raises(InvalidInput, match=r"input 'text'.*<= 9223372036854775807"):
        await dep.infer({"text": ids})
    assert dep.queue_depth == 0 and not replica.batches
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
