"""A replica as a Ray actor: the worker loop of ``engine/local/worker``, one message per call.

The server sends the same declared messages as it writes to a local worker's pipe, MessagePack
bytes in and out (``messages``): ``call`` takes an ``Infer`` and returns its ``Result`` or
``Failed``; ``load`` returns ``Ready`` or ``LoadError``. A generative runtime steps in a thread
of its own (the worker's ``serve_generative``); ``generate`` takes an ``Add`` and streams that
sequence's ``Event`` messages (a Ray streaming generator) until its last one or a ``Failed``,
and ``cancel`` takes a ``Cancel``. Nothing a client sent is pickled.
``wait_stopped`` runs in its own concurrency group and returns only when the actor is told to
stop, so the server's pending call to it fails the moment the actor or its node dies: the
cluster's counterpart of a closed pipe.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import msgspec
import ray

from aimass.engine.local import messages as m
from aimass.engine.local.worker import (
    handle,
    limit_threads,
    load_runtime,
    runtime_info,
    serve_generative,
)
from aimass.engine.ray.files import Refs, materialize
from aimass.errors import ModelFailed
from aimass.spec import ModelSpec


class _Reply:
    """Collects what ``worker.handle`` sends, in place of a pipe."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send_bytes(self, buf: bytes) -> None:
        self.sent.append(buf)


class _Streams:
    """Routes what ``serve_generative`` sends to the queue of the sequence it belongs to."""

    def __init__(self) -> None:
        self.outboxes: dict[int, queue.SimpleQueue] = {}

    def send_bytes(self, buf: bytes) -> None:
        outbox = self.outboxes.get(m.message_id(buf))
        if outbox is not None:
            outbox.put(buf)


STREAMS = "streams"
SEQUENCES = 256
"""Threads of ``generate``'s concurrency group: one per sequence waiting on its events. A
replica is sent at most its share of ``limits.max_concurrent`` x replicas + ``limits.max_queue``
sequences; beyond 256 at once, the next ones wait in Ray's queue for a thread."""


@ray.remote(concurrency_groups={"watch": 1, STREAMS: SEQUENCES}, max_restarts=0, max_task_retries=0)
class ReplicaActor:
    def __init__(self, spec_json: str, refs: Refs):
        self._spec = ModelSpec.model_validate_json(spec_json)
        self._refs = refs
        self._runtime = None
        self._stopped = threading.Event()
        self._batches = 0
        self._inbox: queue.Queue = queue.Queue()
        self._streams = _Streams()

    def load(self) -> bytes:
        """Fetch and check the files, load the runtime; ``Ready`` says where and from what."""
        try:
            spec = materialize(self._spec, self._refs)
            self._refs = {}  # the files are on this node now: free the object store
            limit_threads(spec.threads)
            self._runtime = load_runtime(spec)
            info = runtime_info(self._runtime)
        except Exception as exc:  # any load failure is reported, not raised
            return m.encode(m.LoadError(f"{type(exc).__name__}: {exc}"))
        if self._runtime.generative:
            args = (self._runtime, self._streams, self._inbox)
            threading.Thread(target=serve_generative, args=args, daemon=True).start()
        context = ray.get_runtime_context()
        info |= {
            "node_id": context.get_node_id(),
            "source": spec.source,
            "files_verified": len(spec.sha256),
        }
        return m.encode(m.Ready(info))

    def call(self, raw: bytes) -> bytes:
        """Answer one ``Infer``; whatever goes wrong is a ``Failed`` for its request."""
        reply = _Reply()
        try:
            msg = m.decode_to_worker(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            error = ModelFailed(f"the replica could not read the request: {exc}")
            return m.encode(m.Failed(m.message_id(raw) or 0, m.ErrorEnvelope.of(error)))
        if not isinstance(msg, m.Infer):
            error = ModelFailed(f"a Ray replica takes batches only, not {type(msg).__name__}")
            return m.encode(m.Failed(getattr(msg, "id", 0), m.ErrorEnvelope.of(error)))
        handle(self._runtime, reply, msg)
        self._batches += 1
        return reply.sent[-1]

    @ray.method(concurrency_group=STREAMS, num_returns="streaming")
    def generate(self, raw: bytes) -> Iterator[bytes]:
        """Admit one sequence (an ``Add``) and stream its messages until it is over."""
        msg = m.decode_to_worker(raw)
        outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._streams.outboxes[msg.id] = outbox
        self._inbox.put(msg)
        try:
            while True:
                answer = outbox.get()
                yield answer
                last = m.decode_to_server(answer)
                if isinstance(last, m.Failed) or last.done:
                    return
        finally:
            self._streams.outboxes.pop(msg.id, None)

    def cancel(self, raw: bytes) -> None:
        """End a sequence whose client left (a ``Cancel``)."""
        self._inbox.put(m.decode_to_worker(raw))

    def report(self) -> dict[str, int | str]:
        """Where this replica runs and how many batches it served (where traffic went)."""
        return {"node_id": ray.get_runtime_context().get_node_id(), "batches": self._batches}

    @ray.method(concurrency_group="watch")
    def wait_stopped(self) -> None:
        self._stopped.wait()

    def stop(self) -> None:
        self._inbox.put(m.Stop())  # a generative runtime's stepping thread ends there
        if self._runtime is not None and not self._runtime.generative:
            self._runtime.unload()
        self._stopped.set()
