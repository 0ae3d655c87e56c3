"""The loop that runs inside a replica: load the runtime, then serve messages from the server.

Runs in a spawned process (or, for tests, a thread). Batch runtimes read the pipe directly
and compute one batch at a time. For generative runtimes a reader thread drains the pipe
into an inbox at all times, so the server can always send; the main thread steps the runtime
whenever it has work and picks up new messages between steps — that is what lets a new
sequence join the running batch at the next step.

The messages are the declared types of ``messages``: in ``Infer | Add | Cancel | Stop``;
out ``Ready | LoadError`` once, then ``Result | Failed | Event``. A generative ``Event`` may
carry the replica's gauges alone: see ``_Gauges``. A message that cannot be read, a runtime
error, an output that cannot be sent: each becomes a ``Failed`` answer to its request, and
the worker goes on serving.
"""

from __future__ import annotations

import gc
import os
import queue
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any, Protocol

import msgspec

from aimass.engine.local import messages as m
from aimass.errors import AimassError, InvalidInput, ModelFailed
from aimass.runtimes.base import ROW_ERRORS


class Sender(Protocol):
    """Where answers go: the pipe of a worker process, or a Ray actor's reply (``engine/ray``)."""

    def send_bytes(self, buf: bytes) -> None: ...


def run_worker(spec_json: str, conn: Connection, in_process: bool = False) -> None:
    """Entry point of a replica; returns when told to stop or when the server goes away."""
    from aimass.spec import ModelSpec

    spec = ModelSpec.model_validate_json(spec_json)
    if not in_process:
        limit_threads(spec.threads)
    try:
        runtime = load_runtime(spec)
        ready = m.encode(m.Ready(runtime_info(runtime)))
    except Exception as exc:  # any load failure is reported, not raised
        conn.send_bytes(m.encode(m.LoadError(f"{type(exc).__name__}: {exc}")))
        return
    gc.freeze()  # the loaded model stays: full collections then scan only per-batch objects
    conn.send_bytes(ready)
    try:
        if runtime.generative:
            inbox: queue.Queue = queue.Queue()
            threading.Thread(target=_read_into, args=(conn, inbox), daemon=True).start()
            serve_generative(runtime, conn, inbox)
        else:
            _serve_batches(runtime, conn)
    finally:
        runtime.unload()


OMP_SPIN_COUNT = 1000
"""How many times (about 50 µs here) an OpenMP thread polls before it sleeps at a barrier.

libgomp's default is 300,000 polls, about 15 ms: llama.cpp (built with OpenMP) meets a
barrier after each of the ~400 operations of a token, and when the gateway or the client
takes one core, the other llama.cpp thread spins at the next barrier until it comes back,
and between tokens it spins through the replica's own Python. Measured on the 2-core
machine under load (decode loops alternating, 64 tokens a turn, median tok/s): 5.4 with
the default, 21.9 with 1,000 polls, 11.3 with 3,000, 28.7 with none (``OMP_WAIT_POLICY=
passive``); through the server, 1 client: 6.4, 15.6, 14.2 and 26.0 tok/s. Sleeping at once
makes every barrier a futex wake-up (~400 a token) on a quiet machine; 1,000 polls still
cover the few microseconds two busy threads wait for each other."""


def limit_threads(threads: int) -> None:
    """Size the replica's thread pools, and bound OpenMP's spinning (``OMP_SPIN_COUNT``)
    unless ``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT`` is set; before any library loads."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", str(OMP_SPIN_COUNT))


def load_runtime(spec):
    from aimass.runtimes import create_runtime

    runtime = create_runtime(spec)
    runtime.load()
    return runtime


def runtime_info(runtime) -> dict[str, Any]:
    return {
        "inputs": [t.as_dict() for t in runtime.inputs()],
        "outputs": [t.as_dict() for t in runtime.outputs()],
        "pid": os.getpid(),
        **runtime.describe(),
    }


def _receive(conn: Connection) -> m.Infer | m.Add | m.Cancel | m.Stop | None:
    """The next message; None when it could not be read (its request has been answered).

    The server does not send what it has not checked, so this is a bug's safety net: the
    request gets its error now instead of waiting out its deadline.
    """
    raw = conn.recv_bytes()
    try:
        return m.decode_to_worker(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        req_id = m.message_id(raw)
        if req_id is not None:
            _fail(conn, req_id, ModelFailed(f"the replica could not read the request: {exc}"))
        return None


def _read_into(conn: Connection, inbox: queue.Queue) -> None:
    while True:
        try:
            msg = _receive(conn)
        except (EOFError, OSError):
            inbox.put(m.Stop())
            return
        if msg is not None:
            inbox.put(msg)


def _serve_batches(runtime, conn: Connection) -> None:
    """One batch at a time, read straight from the pipe: the server sends a batch only to an
    idle replica, so nothing large waits in the pipe while this one computes."""
    while True:
        try:
            msg = _receive(conn)
        except (EOFError, OSError):
            return
        if isinstance(msg, m.Stop):
            return
        if msg is not None:
            handle(runtime, conn, msg)


def serve_generative(runtime, conn: Sender, inbox: queue.Queue) -> None:
    """Step the runtime while it has work, taking new messages from ``inbox`` between steps,
    until a ``Stop``; the worker process and the Ray actor (``engine/ray``) both run it."""
    gauges = _Gauges(runtime, conn)
    while True:
        busy = runtime.has_work()
        messages = [] if busy else [inbox.get()]
        while True:
            try:
                messages.append(inbox.get_nowait())
            except queue.Empty:
                break
        for msg in messages:
            if isinstance(msg, m.Stop):
                return
            if handle(runtime, conn, msg):
                gauges.handled(msg)
        events = runtime.step() if runtime.has_work() else []
        gauges.attach(events)
        for ev in events:
            _send_event(runtime, conn, ev.req_id, ev.data, ev.done)
        gauges.flush()


def _send_event(runtime, conn: Sender, req_id: int, data: dict, done: bool) -> None:
    """One step's event; an event the runtime shaped wrongly ends its sequence with 500."""
    try:
        raw = m.encode(m.Event(req_id, m.GenerationEvent.of(data), done))
    except Exception as exc:  # a runtime bug must not kill the replica
        runtime.cancel(req_id)
        _fail(conn, req_id, ModelFailed(f"model {runtime.spec.name!r} sent a bad event: {exc}"))
        return
    conn.send_bytes(raw)


class _Gauges:
    """Keeps the server's gauges (running, waiting, KV cells) current.

    The server has no channel for replica-wide figures, only each sequence's event stream,
    so the figures ride there: on the last event of every step (the freshest the server
    reads), and, when an admit or a cancel changed them but the step said nothing, on an
    event of their own sent on a sequence still alive. A cancel otherwise sends no event,
    and the gauges would keep counting a sequence that is gone.
    """

    def __init__(self, runtime, conn: Sender):
        self.runtime = runtime
        self.conn = conn
        self.live: dict[int, None] = {}  # insertion-ordered set of sequences in the runtime
        self.changed = False

    def handled(self, msg: m.Infer | m.Add | m.Cancel) -> None:
        if isinstance(msg, m.Add):
            self.live[msg.id] = None
        elif isinstance(msg, m.Cancel):
            self.live.pop(msg.id, None)
        else:
            return
        self.changed = True

    def attach(self, events: list) -> None:
        for ev in events:
            if ev.done:
                self.live.pop(ev.req_id, None)
        if events:
            events[-1].data["stats"] = self.runtime.stats()
            self.changed = False

    def flush(self) -> None:
        if self.changed and self.live:
            carrier = next(iter(self.live))
            _send_event(self.runtime, self.conn, carrier, {"stats": self.runtime.stats()}, False)
        self.changed = False


def handle(runtime, conn: Sender, msg: m.Infer | m.Add | m.Cancel) -> bool:
    """Carry out one message; False when it failed (the error is sent to its request)."""
    try:
        if isinstance(msg, m.Infer):
            conn.send_bytes(_result(runtime, msg))
        elif isinstance(msg, m.Add):
            runtime.add(msg.id, msg.request.as_dict())
        else:
            runtime.cancel(msg.id)
    except AimassError as exc:
        _fail(conn, msg.id, exc)
    except Exception as exc:  # a runtime bug must not kill the replica
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        _fail(conn, msg.id, ModelFailed(f"model {runtime.spec.name!r} failed: {detail}"))
    else:
        return True
    return False


def _result(runtime, msg: m.Infer) -> bytes:
    outputs = runtime.infer(m.decode_payload(msg.inputs))
    row_errors = outputs.pop(ROW_ERRORS, None)
    if row_errors is not None:
        row_errors = [None if e is None else m.ErrorEnvelope.of(_row_error(e)) for e in row_errors]
    return m.encode(m.Result(msg.id, m.encode_payload(outputs, check=True), row_errors))


def _row_error(error: AimassError | str) -> AimassError:
    """A runtime reports a row's problem as a message (a 400) or as an error with its status
    (an image over a size limit is a 413)."""
    return error if isinstance(error, AimassError) else InvalidInput(str(error))


def _fail(conn: Sender, req_id: int, error: AimassError) -> None:
    conn.send_bytes(m.encode(m.Failed(req_id, m.ErrorEnvelope.of(error))))
