"""Autoscaling: the arithmetic on given samples, and a deployment that follows its load."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from aimass.engine import deployment as deployment_module
from aimass.engine.autoscale import Autoscaler
from aimass.engine.deployment import READY, Deployment, Supervision
from aimass.errors import InvalidInput
from aimass.spec import Autoscaling, ModelSpec
from tests.unit.test_batcher import HeldReplica

POLICY = Autoscaling(
    min_replicas=1,
    max_replicas=4,
    target_ongoing_requests=2,
    upscale_delay_s=2,
    downscale_delay_s=10,
)


def test_wanted_is_the_load_over_the_target_within_min_and_max():
    scaler = Autoscaler(POLICY)
    assert [scaler.wanted(load) for load in (0, 1, 2, 3, 8, 100)] == [1, 1, 1, 2, 4, 4]


def test_a_burst_shorter_than_the_delay_moves_nothing():
    scaler = Autoscaler(POLICY)
    assert scaler.sample(0.0, 8, current=1) is None
    assert scaler.sample(1.0, 8, current=1) is None
    assert scaler.sample(2.0, 0, current=1) is None  # the burst ended before 2 s


def test_a_load_held_for_the_delay_scales_to_what_every_sample_wanted():
    scaler = Autoscaler(POLICY)
    assert scaler.sample(0.0, 8, current=1) is None
    assert scaler.sample(1.0, 5, current=1) is None
    assert scaler.sample(2.0, 8, current=1) == 3  # the smallest wish of the window
    assert scaler.sample(2.5, 8, current=3) is None, "a new window starts after a move"


def test_scaling_down_waits_for_the_longer_delay():
    scaler = Autoscaler(POLICY)
    for t in range(10):
        assert scaler.sample(float(t), 0, current=3) is None
    assert scaler.sample(10.0, 2, current=3) == 1


def test_replicas_must_lie_within_the_bounds():
    data = {"name": "m", "runtime": "onnx", "source": "x.onnx", "replicas": 5}
    with pytest.raises(InvalidInput, match=r"within autoscaling\.min_replicas"):
        ModelSpec.parse({**data, "autoscaling": {"max_replicas": 4}})
    with pytest.raises(InvalidInput, match="min_replicas must not exceed max_replicas"):
        ModelSpec.parse({**data, "autoscaling": {"min_replicas": 6, "max_replicas": 5}})


class ScalingReplica(HeldReplica):
    """A held replica with the lifecycle a deployment drives."""

    def __init__(self, spec: ModelSpec, index: int, **_) -> None:
        super().__init__()
        self.spec, self.index, self.info, self.on_exit, self.pid = spec, index, {}, None, None
        self.computing = 0
        self.stopped = False

    @property
    def busy(self) -> int:
        return self.computing

    async def start(self, load_timeout_s: float) -> None:
        pass

    async def submit(self, batch, deadline=None):
        self.computing += 1
        try:
            return await super().submit(batch)
        finally:
            self.computing -= 1

    async def stop(self) -> None:
        self.stopped = True
        self.alive = False


async def _until(condition, within_s: float = 5.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():
            await asyncio.sleep(0.02)


async def test_a_deployment_follows_its_load_up_and_back_down(monkeypatch):
    made: list[ScalingReplica] = []

    def create(spec, index, **kw):
        made.append(ScalingReplica(spec, index))
        return made[-1]

    monkeypatch.setattr(deployment_module, "create_replica", create)
    policy = {"max_replicas": 3, "target_ongoing_requests": 1}
    policy |= {"upscale_delay_s": 0, "downscale_delay_s": 0.5}
    spec = ModelSpec(
        name="m", runtime="onnx", source="x.onnx", batching={"max_batch_size": 1},
        autoscaling=policy,
    )  # fmt: skip
    dep = Deployment(spec, Supervision())
    await dep.start()
    assert dep.state == READY and len(made) == 1
    calls = [asyncio.ensure_future(dep.infer({"x": np.ones((1, 1), np.float32)})) for _ in range(3)]
    await _until(lambda: len(dep._pool.alive) == 3)
    assert dep.describe()["target_replicas"] == 3
    for replica in made:
        replica.release.set()
    await asyncio.gather(*calls)
    # The pool drops retiring replicas at once and stops them a loop turn later.
    await _until(lambda: len(dep._pool.alive) == 1 and sum(r.stopped for r in made) == 2)
    assert [r.stopped for r in made] == [False, True, True], "the newest replicas retire"
    await dep.stop()
