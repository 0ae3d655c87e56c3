"""The Ray backend of ``engine/replica``: one replica, one actor, called through its handle.

``start`` joins the cluster (once per server), ships the model files (``files``), and creates
the actor with the spec's ``resources``: ``num_cpus`` (default ``threads``), ``memory_mb``, and
``placement: spread`` (the default) unless the spec asks for Ray's default. Spread pins replica
*i* to the *i*-th alive node that can hold it (soft node affinity): Ray's own SPREAD is best
effort and was seen to put both replicas of a deployment on one of two idle nodes. A lost
actor (its process or its node died) fails the request it was computing with 503 and
``Retry-After`` (``replica_lost``), and ``on_exit`` tells the deployment, which starts a new
actor; Ray places it on a live node. Loss is seen by the call in flight or, when idle, by the
pending ``wait_stopped`` call. Generative models stream: ``stream`` reads the actor's
``generate`` stream of messages.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import ray
from ray.exceptions import RayActorError, RayError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from aimass import metrics_llm
from aimass.engine.local import messages as m
from aimass.engine.ray.actor import ReplicaActor
from aimass.engine.ray.connect import NAMESPACE, connect
from aimass.engine.ray.files import ship
from aimass.engine.replica import (
    ReplicaBase,
    ReplicaState,
    account,
    batch_outputs,
    encode_add,
    replica_lost,
)
from aimass.errors import DeadlineExceeded, ModelFailed, Unavailable
from aimass.runtimes.base import Payload
from aimass.spec import ModelSpec

log = logging.getLogger("aimass.replica")
_ids = itertools.count(1)


class RayReplica(ReplicaBase):
    def __init__(self, spec: ModelSpec, index: int, *, cluster: str):
        super().__init__(spec, index)
        self.cluster = cluster
        self.name = f"{spec.name}:{spec.version}:{index}:{uuid.uuid4().hex[:8]}"
        self._actor: Any = None
        self._watch: asyncio.Task | None = None
        self._busy = 0

    @property
    def busy(self) -> int:
        return self._busy

    async def start(self, load_timeout_s: float) -> None:
        """Create the actor on the cluster and wait until its model is loaded."""
        try:
            async with asyncio.timeout(load_timeout_s):  # ray.init retries an absent GCS long
                await asyncio.to_thread(connect, self.cluster)
        except TimeoutError:
            raise Unavailable(
                f"{self.label}: no Ray cluster answered at {self.cluster!r} within "
                f"{load_timeout_s:g} s (setting load_timeout_s)"
            ) from None
        except Exception as exc:  # ray.init raises several kinds; any of them means "not now"
            raise Unavailable(
                f"{self.label}: cannot join the Ray cluster {self.cluster!r}: {_first_line(exc)}"
            ) from None
        try:
            spec, refs = await asyncio.to_thread(ship, self.spec)
        except (OSError, RayError) as exc:
            raise Unavailable(f"{self.label}: its files cannot be shipped: {exc}") from None
        self._actor = ReplicaActor.options(**self._placement()).remote(spec.model_dump_json(), refs)
        msg = await self._load(load_timeout_s)
        if not isinstance(msg, m.Ready):
            self._kill()
            raise Unavailable(f"{self.label} failed to load: {msg.message}")
        self.info = msg.info
        self.state = ReplicaState.READY
        self._watch = asyncio.ensure_future(self._watch_actor())

    def _placement(self) -> dict[str, Any]:
        resources = self.spec.resources
        options: dict[str, Any] = {
            "name": self.name,
            "namespace": NAMESPACE,
            "num_cpus": self.spec.threads if resources.num_cpus is None else resources.num_cpus,
            "num_gpus": resources.num_gpus,
            "scheduling_strategy": "DEFAULT",
        }
        if resources.placement == "spread":
            options["scheduling_strategy"] = _spread(self.index, options["num_cpus"])
        if resources.memory_mb is not None:
            options["memory"] = resources.memory_mb * 1024 * 1024
        return options

    async def _load(self, timeout_s: float) -> m.Ready | m.LoadError:
        try:
            async with asyncio.timeout(timeout_s):
                raw = await self._actor.load.remote()
        except TimeoutError:
            return m.LoadError(f"load timed out after {timeout_s:g} s (setting load_timeout_s)")
        except RayError as exc:
            return m.LoadError(f"its actor failed: {_first_line(exc)}")
        try:
            msg = m.decode_to_server(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return m.LoadError(f"its first message could not be read: {exc}")
        if not isinstance(msg, m.Ready | m.LoadError):
            return m.LoadError(f"it sent {type(msg).__name__} before it was ready")
        return msg

    async def submit(self, batch: Payload, deadline: float | None = None) -> Payload:
        """Run one batch on this replica's actor."""
        if not self.alive:
            raise Unavailable(f"{self.label} is not running")
        raw = m.encode(m.Infer(next(_ids), m.encode_payload(batch)))
        self._busy += 1
        try:
            answer = await self._actor.call.remote(raw)
        except RayTaskError as exc:
            raise ModelFailed(f"{self.label} failed: {_first_line(exc)}") from None
        except RayError as exc:
            why = f"was lost ({type(exc).__name__})"
            self._lost(why)
            raise replica_lost(self.label, why) from None
        finally:
            self._busy -= 1
        try:
            return batch_outputs(m.decode_to_server(answer))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise ModelFailed(
                f"{self.label} sent an answer the server cannot read: {exc}"
            ) from None

    async def stream(
        self, request: dict[str, Any], deadline: float | None = None
    ) -> AsyncIterator[m.GenerationEvent]:
        """Admit a sequence and yield its events; leaving early cancels it in the actor."""
        if not self.alive:
            raise Unavailable(f"{self.label} is not running")
        req_id = next(_ids)
        events = self._actor.generate.remote(encode_add(req_id, request))
        self._busy += 1
        finished = False
        try:
            while True:
                msg = await self._next(events, deadline)
                if isinstance(msg, m.Failed):
                    finished = True
                    raise msg.error.exception()
                self._last_stats = account(self.spec, self.index, msg.event) or self._last_stats
                finished = msg.done
                yield msg.event
                if finished:
                    return
        finally:
            self._busy -= 1
            if not finished and self.alive:
                self._actor.cancel.remote(m.encode(m.Cancel(req_id)))
            if not self._busy:
                metrics_llm.record_replica_idle(
                    self.spec.name, self.spec.version, self.index, self._last_stats
                )

    async def _next(self, events: Any, deadline: float | None) -> m.Event | m.Failed:
        """The sequence's next message by ``deadline`` (``asyncio.timeout``, never
        ``wait_for``: see ``LocalReplica._next``)."""
        remaining = None if deadline is None else max(deadline - time.monotonic(), 0)
        try:
            async with asyncio.timeout(remaining):
                raw = await (await events.__anext__())
        except TimeoutError:
            raise DeadlineExceeded(
                f"{self.label}: request exceeded its deadline (limits.timeout_s)"
            ) from None
        except RayTaskError as exc:
            raise ModelFailed(f"{self.label} failed: {_first_line(exc)}") from None
        except (RayError, StopAsyncIteration) as exc:
            why = f"was lost ({type(exc).__name__})"
            self._lost(why)
            raise replica_lost(self.label, why) from None
        msg = m.decode_to_server(raw)
        if not isinstance(msg, m.Event | m.Failed):
            raise ModelFailed(f"{self.label} sent {type(msg).__name__} in a stream")
        return msg

    async def _watch_actor(self) -> None:
        """Returns when the actor is stopped; fails at once when it, or its node, dies."""
        try:
            await self._actor.wait_stopped.remote()
        except RayActorError as exc:
            self._lost(f"was lost ({type(exc).__name__})")

    def _lost(self, why: str) -> None:
        if self.state is not ReplicaState.READY:
            return
        self.state = ReplicaState.EXITED
        log.warning("%s %s (node %s)", self.label, why, self.info.get("node_id"))
        self._kill_actor()
        if self.on_exit is not None:
            self.on_exit(self, why)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Let the runtime unload, then end the actor (its reservation returns to the cluster)."""
        self.state = ReplicaState.STOPPING
        if self._actor is not None:
            try:
                async with asyncio.timeout(grace_s):
                    await self._actor.stop.remote()
            except (TimeoutError, RayError):
                pass
        self._kill()

    def _kill(self) -> None:
        self.state = ReplicaState.STOPPED
        if self._watch is not None:
            self._watch.cancel()
        self._kill_actor()

    def _kill_actor(self) -> None:
        if self._actor is not None:
            try:
                ray.kill(self._actor, no_restart=True)
            except RayError:
                pass


def _spread(index: int, num_cpus: float) -> Any:
    """Replica ``index`` goes to the ``index``-th of the alive nodes with ``num_cpus`` in all
    (in a stable order), softly: if that node cannot take it now, Ray places it elsewhere. A
    replica restarted after its node died counts only the nodes still alive."""
    fits = sorted(
        node["NodeID"]
        for node in ray.nodes()
        if node.get("Alive") and node.get("Resources", {}).get("CPU", 0) >= num_cpus
    )
    if not fits:
        return "SPREAD"
    return NodeAffinitySchedulingStrategy(node_id=fits[index % len(fits)], soft=True)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
