"""A loaded model version: its replicas, their supervisor, and the way requests reach them.

Tensor and text models go through the ``Batcher``; generative models stream from a replica
whose runtime batches continuously, behind an admission limit. When a replica dies, its
requests fail at once (see ``local/replica``), the supervisor restarts it with exponential
backoff, and after ``max_restarts`` crashes within ``restart_window_s`` the model is marked
failed with the last error kept for the API. A model's ``state`` is a ``DeploymentState``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aimass import metrics, metrics_llm
from aimass.engine.autoscale import INTERVAL_S, Autoscaler
from aimass.engine.batcher import COST_KEY, Batcher
from aimass.engine.local.messages import GenerationEvent, check_payload
from aimass.engine.pool import ReplicaPool
from aimass.engine.replica import Replica, create_replica
from aimass.errors import AimassError, InvalidInput, PayloadTooLarge, QueueFull, Unavailable
from aimass.runtimes.base import Payload
from aimass.spec import Autoscaling, ModelSpec


class DeploymentState(StrEnum):
    """Where a model version is; the API shows the value ("ready", ...)."""

    LOADING = "loading"
    READY = "ready"
    FAILED = "failed"
    UNLOADED = "unloaded"


# The states by their short names, as the engine, the server and the control plane use them.
LOADING, READY, FAILED, UNLOADED = (
    DeploymentState.LOADING,
    DeploymentState.READY,
    DeploymentState.FAILED,
    DeploymentState.UNLOADED,
)


@dataclass
class Supervision:
    """Restart policy and where replicas run, taken from the server settings."""

    in_process: bool = False
    cluster: str = ""
    """Empty: replicas are local worker processes; else the Ray cluster they run on."""
    load_timeout_s: float = 300.0
    backoff_s: float = 0.5
    backoff_max_s: float = 30.0
    max_restarts: int = 5
    window_s: float = 300.0
    max_request_rows: int = 4096


class Deployment:
    def __init__(
        self,
        spec: ModelSpec,
        supervision: Supervision,
        on_state: Callable[[Deployment], None] | None = None,
    ):
        self.spec = spec
        self.state: DeploymentState = LOADING
        self.last_error: str | None = None
        self.info: dict[str, Any] = {}
        self.restarts = 0
        self._sup = supervision
        self._on_state = on_state
        self._pool = ReplicaPool()
        self._batcher: Batcher | None = None
        self._crashes: list[float] = []
        self._restart_tasks: set[asyncio.Task] = set()
        self._streams = 0
        self._target = spec.replicas
        self._scaler: asyncio.Task | None = None
        self._labels = metrics.labels(spec.name, spec.version)
        self._total_latency = metrics.LATENCY.labels(**self._labels, stage="total")
        self._by_status: dict[str, Any] = {}
        """REQUESTS' labelled child per status, looked up once: ``labels()`` sorts and
        copies its arguments on every call, several microseconds per request."""
        self.stats = metrics.InferenceStats()

    @property
    def replicas(self) -> list[Replica]:
        return list(self._pool.replicas)

    @property
    def queue_depth(self) -> int:
        if self._batcher is not None:
            return self._batcher.depth
        return max(0, self._streams - self._stream_capacity())

    @property
    def ongoing(self) -> int:
        """Requests waiting and running (sequences, for generative models): the load the
        autoscaler divides by ``target_ongoing_requests``."""
        if self._batcher is not None:
            return self._batcher.depth + sum(r.busy for r in self._pool.alive)
        return self._streams

    def describe(self) -> dict[str, Any]:
        nodes = sorted({r.info["node_id"] for r in self._pool.alive if "node_id" in r.info})
        return {
            **({"nodes": nodes} if nodes else {}),
            **({"target_replicas": self._target} if self.spec.autoscaling else {}),
            "name": self.spec.name,
            "version": self.spec.version,
            "state": self.state,
            "last_error": self.last_error,
            "replicas": len(self._pool.alive),
            "pids": [r.pid for r in self._pool.alive],
            "restarts": self.restarts,
            "queue_depth": self.queue_depth,
        }

    async def start(self) -> None:
        """Start every replica; the model is ready when at least one serves."""
        self._set_state(LOADING)
        if not self.spec.generative:
            self._batcher = Batcher(self.spec, self._pool, self.stats)
        results = await asyncio.gather(
            *(self._start_replica(i) for i in range(self.spec.replicas)), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if len(errors) == len(results):
            await self._fail(str(errors[0]))
            return
        for index, result in enumerate(results):
            if isinstance(result, BaseException):
                self._schedule_restart(index, str(result))
        if self.spec.autoscaling is not None:
            self._scaler = asyncio.create_task(self._autoscale(self.spec.autoscaling))
        self._set_state(READY)

    async def _autoscale(self, policy: Autoscaling) -> None:
        scaler = Autoscaler(policy)
        while True:
            await asyncio.sleep(INTERVAL_S)
            if self.state != READY:
                continue
            count = scaler.sample(time.monotonic(), self.ongoing, self._target)
            if count is not None:
                await self._scale_to(count)

    async def _scale_to(self, count: int) -> None:
        """Start replicas ``target .. count-1``, or retire those from ``count`` up."""
        old, self._target = self._target, count
        self._notify()
        if count > old:
            indexes = range(old, count)
            results = await asyncio.gather(
                *(self._start_replica(i) for i in indexes), return_exceptions=True
            )
            for index, result in zip(indexes, results, strict=True):
                if isinstance(result, BaseException):
                    self._schedule_restart(index, str(result))
            return
        retiring = [r for r in self._pool.replicas if r.index >= count]
        for replica in retiring:
            self._pool.remove(replica)  # no new work; what it computes now finishes
        self._update_up()
        await asyncio.gather(*(self._retire(r) for r in retiring))

    async def _retire(self, replica: Replica) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.spec.limits.timeout_s):
                while replica.busy:
                    await asyncio.sleep(0.05)
        await replica.stop()

    async def _start_replica(self, index: int) -> Replica:
        replica = create_replica(
            self.spec, index, in_process=self._sup.in_process, cluster=self._sup.cluster
        )
        await replica.start(self._sup.load_timeout_s)
        if self.state in (FAILED, UNLOADED):
            await replica.stop()
            raise Unavailable(f"model {self.spec.name!r} was unloaded while loading")
        replica.on_exit = self._replica_exited
        if not self.info:
            self.info = dict(replica.info)
        self._pool.add(replica)
        self._update_up()
        return replica

    def _replica_exited(self, replica: Replica, reason: str) -> None:
        self._pool.remove(replica)
        self._update_up()
        self._schedule_restart(replica.index, f"replica {replica.index} {reason}")

    def _schedule_restart(self, index: int, reason: str) -> None:
        now = time.monotonic()
        self._crashes = [t for t in self._crashes if now - t < self._sup.window_s] + [now]
        self.last_error = reason
        if len(self._crashes) > self._sup.max_restarts:
            task = asyncio.create_task(
                self._fail(f"{reason}; gave up after {self._sup.max_restarts} restarts")
            )
        else:
            delay = min(
                self._sup.backoff_s * 2 ** (len(self._crashes) - 1), self._sup.backoff_max_s
            )
            task = asyncio.create_task(self._restart(index, delay))
        self._restart_tasks.add(task)
        task.add_done_callback(self._restart_tasks.discard)
        self._notify()

    async def _restart(self, index: int, delay: float) -> None:
        await asyncio.sleep(delay)
        if self.state in (FAILED, UNLOADED) or index >= self._target:
            return  # unloaded, or scaled down meanwhile
        try:
            await self._start_replica(index)
        except AimassError as exc:
            self._schedule_restart(index, exc.message)
            return
        self.restarts += 1
        metrics.RESTARTS.labels(**self._labels).inc()
        self._notify()

    async def _fail(self, error: str) -> None:
        self.last_error = error
        self._set_state(FAILED)
        await self._shutdown(Unavailable(f"model {self.spec.name!r} failed: {error}"))

    async def stop(self) -> None:
        """Unload: fail queued work, end every replica process, forget the gauges."""
        self._set_state(UNLOADED)
        await self._shutdown(Unavailable(f"model {self.spec.name!r} was unloaded"))
        metrics.forget(self.spec.name, self.spec.version)
        metrics_llm.forget(self.spec.name, self.spec.version)

    async def _shutdown(self, error: AimassError) -> None:
        if self._scaler is not None and self._scaler is not asyncio.current_task():
            self._scaler.cancel()
        for task in list(self._restart_tasks):
            if task is not asyncio.current_task():
                task.cancel()
        if self._batcher is not None:
            await self._batcher.close(error)
        replicas = self.replicas
        for replica in replicas:
            self._pool.remove(replica)
        await asyncio.gather(*(r.stop() for r in replicas), return_exceptions=True)
        self._update_up()

    def _set_state(self, state: DeploymentState) -> None:
        self.state = state
        if state == READY:
            self.last_error = None
        self._notify()

    def _notify(self) -> None:
        if self._on_state is not None:
            self._on_state(self)

    def _update_up(self) -> None:
        metrics.REPLICAS_UP.labels(**self._labels).set(len(self._pool.alive))

    def _check_serving(self) -> None:
        if self.state == FAILED:
            raise Unavailable(f"model {self.spec.name!r} failed: {self.last_error}")
        if self.state != READY:
            raise Unavailable(f"model {self.spec.name!r} is {self.state}")

    def admit(self) -> None:
        """Refuse at once what ``infer`` would refuse before queueing (not serving, queue full).

        Transports call this before reading a request's body, so an overloaded model answers
        its 429s without decoding anything; ``infer`` checks again when it queues.
        """
        self._check_serving()
        if self._batcher is not None:
            self._batcher.check_room()

    def deadline(self, timeout_s: float | None) -> float:
        """A client may shorten the model's deadline, never lengthen it."""
        limit = self.spec.limits.timeout_s
        chosen = limit if timeout_s is None or timeout_s <= 0 else min(timeout_s, limit)
        return time.monotonic() + chosen

    async def infer(
        self, payload: Payload, *, timeout_s: float | None = None, background: bool = False
    ) -> Payload:
        """Batch and run one request; rows beyond ``max_batch_size`` are split across batches
        (the batcher admits them as one request); ``background`` yields to online requests."""
        started = time.monotonic()
        status = "200"
        try:
            self._check_serving()
            rows = _rows(payload)
            if rows > self._sup.max_request_rows:
                raise PayloadTooLarge(
                    f"request has {rows} rows; the limit is {self._sup.max_request_rows} "
                    "(setting max_request_rows)"
                )
            check_payload(payload)
            return await self._batcher.submit(
                payload, rows, self.deadline(timeout_s), background=background
            )
        except AimassError as exc:
            status = str(exc.status)
            raise
        except asyncio.CancelledError:
            status = "499"
            raise
        finally:
            took = time.monotonic() - started
            self._count(status)
            self._total_latency.observe(took)
            self.stats.request(status == "200", took)

    def _count(self, status: str) -> None:
        child = self._by_status.get(status)
        if child is None:
            child = metrics.REQUESTS.labels(**self._labels, status=status)
            self._by_status[status] = child
        child.inc()

    def _stream_capacity(self) -> int:
        per_replica = self.spec.limits.max_concurrent or int(self.info.get("max_concurrent", 1))
        return per_replica * max(1, len(self._pool.alive))

    async def generate(
        self, request: dict[str, Any], *, timeout_s: float | None = None
    ) -> AsyncIterator[GenerationEvent]:
        """Stream one generation; admission is bounded by running slots + ``max_queue``."""
        self._check_serving()
        capacity = self._stream_capacity() + self.spec.limits.max_queue
        if self._streams >= capacity:
            self._count("429")
            self.stats.request(False, 0.0)
            raise QueueFull(
                f"model {self.spec.name!r} has {self._streams} sequences running or waiting; "
                f"the limit is {capacity} (limits.max_concurrent × replicas + limits.max_queue)",
                retry_after=1,
            )
        replica = self._pool.least_busy()
        if replica is None:
            raise Unavailable(f"model {self.spec.name!r} has no replica running")
        self._streams += 1
        status, started = "200", time.monotonic()
        try:
            async for event in replica.stream(request, self.deadline(timeout_s)):
                yield event
        except AimassError as exc:
            status = str(exc.status)
            raise
        except (asyncio.CancelledError, GeneratorExit):
            status = "499"
            raise
        finally:
            self._streams -= 1
            self._count(status)
            self.stats.request(status == "200", time.monotonic() - started, inferences=1)


def _rows(payload: Payload) -> int:
    sizes = {len(v) for k, v in payload.items() if k != COST_KEY}
    if len(sizes) != 1:
        raise InvalidInput(
            f"all inputs must have the same number of rows (first dimension), got {sorted(sizes)}"
        )
    return sizes.pop()
