"""What the scheduler needs of a replica, whichever backend runs it.

The ``Deployment``, its ``ReplicaPool`` and the ``Batcher`` see only this protocol, so a
replica may be a local worker process (``engine/local``) or a Ray actor on a cluster
(``engine/ray``); ``create_replica`` picks the backend from the server's ``cluster`` setting.
Both backends speak the same typed messages (``engine/local/messages``) and answer a replica
that went away the same way: every request in flight fails at once with ``replica_lost``
(503 with ``Retry-After``), ``on_exit`` tells the deployment, and it starts a new one.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from enum import StrEnum
from typing import Any, Protocol

from aimass import metrics_llm
from aimass.engine.local import messages as m
from aimass.errors import InvalidInput, Unavailable
from aimass.runtimes.base import ROW_ERRORS, Payload
from aimass.spec import ModelSpec

RETRY_AFTER_S = 1
"""What a request cut off by a lost replica is told to wait: the first restart comes after
``restart_backoff_s`` (0.5 s by default), and other replicas serve meanwhile."""


class Replica(Protocol):
    """One copy of a model that computes one batch at a time (or streams generations)."""

    spec: ModelSpec
    index: int
    info: dict[str, Any]
    on_exit: Callable[[Replica, str], None] | None

    @property
    def alive(self) -> bool: ...

    @property
    def busy(self) -> int: ...

    @property
    def pid(self) -> int | None: ...

    async def start(self, load_timeout_s: float) -> None:
        """Load the model; raise Unavailable when it cannot."""

    async def submit(self, batch: Payload, deadline: float | None = None) -> Payload:
        """Run one batch."""

    def stream(
        self, request: dict[str, Any], deadline: float | None = None
    ) -> AsyncIterator[m.GenerationEvent]:
        """Admit a sequence and yield its events."""

    async def stop(self) -> None:
        """End the replica and free what it holds."""


class ReplicaState(StrEnum):
    """``starting`` → ``ready``, ending ``stopped`` (the server stopped it, or it never loaded)
    or ``exited`` (it went away by itself; its deployment starts another)."""

    STARTING = "starting"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    EXITED = "exited"


class ReplicaBase:
    """What every backend's replica holds: its spec and index, what its runtime said when it
    loaded (``info``), its state, and the last gauges its generations carried."""

    def __init__(self, spec: ModelSpec, index: int):
        self.spec = spec
        self.index = index
        self.info: dict[str, Any] = {}
        self.state = ReplicaState.STARTING
        self.on_exit: Callable[[Any, str], None] | None = None
        self._last_stats: dict[str, float] = {}

    @property
    def label(self) -> str:
        return f"model {self.spec.name!r} version {self.spec.version} replica {self.index}"

    @property
    def alive(self) -> bool:
        return self.state is ReplicaState.READY

    @property
    def pid(self) -> int | None:
        return self.info.get("pid")


def create_replica(
    spec: ModelSpec, index: int, *, in_process: bool = False, cluster: str = ""
) -> Replica:
    """A local worker process (thread with ``in_process``), or a Ray actor when ``cluster``
    names a Ray cluster (``auto``, ``ray://host:port`` or a GCS ``host:port``)."""
    if cluster:
        from aimass.engine.ray.replica import RayReplica

        return RayReplica(spec, index, cluster=cluster)
    from aimass.engine.local.replica import LocalReplica

    return LocalReplica(spec, index, in_process=in_process)


def replica_lost(label: str, why: str) -> Unavailable:
    """The error of a request whose replica went away while computing it."""
    return Unavailable(
        f"{label} {why}; the request was not completed",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


def batch_outputs(msg: m.Result | m.Failed) -> Payload:
    """A batch's answer as the batcher takes it: its outputs (with per-row errors), or the
    error that failed it as a whole, raised."""
    if isinstance(msg, m.Failed):
        raise msg.error.exception()
    outputs = m.decode_payload(msg.outputs)
    if msg.row_errors is not None:
        outputs[ROW_ERRORS] = [e and e.exception() for e in msg.row_errors]
    return outputs


def encode_add(req_id: int, request: dict[str, Any]) -> bytes:
    """The ``Add`` message; a request it cannot carry (an integer beyond 64 bits deep in a
    JSON schema, say) is this client's 400, found before anything is sent."""
    try:
        return m.encode(m.Add(req_id, m.GenerationRequest.of(request)))
    except (OverflowError, TypeError) as exc:
        raise InvalidInput(f"the generation request cannot be sent to the model: {exc}") from None


def account(spec: ModelSpec, index: int, event: m.GenerationEvent) -> dict[str, float] | None:
    """Stamp the replica's index into the gauges an event carries (the metrics are per
    replica), and count a request's prompt once (on its choice 0's last event); returns the
    gauges, if the event has them."""
    if event.usage is not None and event.index == 0:
        usage = event.usage
        metrics_llm.record_prompt(spec.name, spec.version, usage.prompt_tokens, usage.cached_tokens)
    if event.stats is not None:
        event.stats["replica"] = index
    return event.stats
