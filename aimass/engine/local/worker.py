"""The loop that runs inside a replica: load the runtime, then serve messages from the server.

Runs in a spawned process (or, for tests, a thread). Batch runtimes read the pipe directly
and compute one batch at a time. For generative runtimes a reader thread drains the pipe
into an inbox at all times, so the server can always send; the main thread steps the runtime
whenever it has work and picks up new messages between steps — that is what lets a new
sequence join the running batch at the next step.

Messages in:  ("infer", id, payload) | ("add", id, request) | ("cancel", id) | ("stop",)
Messages out: ("ready", info) | ("load_error", text) | ("result", id, outputs)
              | ("error", id, AimassError) | ("event", id, data, done)

A generative event's ``data`` may be ``{"stats": ...}`` alone: see ``_Gauges``.
"""

from __future__ import annotations

import os
import queue
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

from aimass.errors import AimassError, ModelFailed


def run_worker(spec_json: str, conn: Connection, in_process: bool = False) -> None:
    """Entry point of a replica; returns when told to stop or when the server goes away."""
    from aimass.spec import ModelSpec

    spec = ModelSpec.model_validate_json(spec_json)
    if not in_process:
        _limit_threads(spec.threads)
    try:
        runtime = _load(spec)
    except Exception as exc:  # any load failure is reported, not raised
        conn.send(("load_error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", _info(runtime)))
    try:
        if runtime.generative:
            inbox: queue.Queue = queue.Queue()
            threading.Thread(target=_read_into, args=(conn, inbox), daemon=True).start()
            _serve_generative(runtime, conn, inbox)
        else:
            _serve_batches(runtime, conn)
    finally:
        runtime.unload()


def _limit_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)


def _load(spec):
    from aimass.runtimes import create_runtime

    runtime = create_runtime(spec)
    runtime.load()
    return runtime


def _info(runtime) -> dict[str, Any]:
    return {
        "inputs": [t.as_dict() for t in runtime.inputs()],
        "outputs": [t.as_dict() for t in runtime.outputs()],
        "pid": os.getpid(),
        **runtime.describe(),
    }


def _read_into(conn: Connection, inbox: queue.Queue) -> None:
    while True:
        try:
            inbox.put(conn.recv())
        except (EOFError, OSError):
            inbox.put(("stop",))
            return


def _serve_batches(runtime, conn: Connection) -> None:
    """One batch at a time, read straight from the pipe: the server sends a batch only to an
    idle replica, so nothing large waits in the pipe while this one computes."""
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "stop":
            return
        _handle(runtime, conn, msg)


def _serve_generative(runtime, conn: Connection, inbox: queue.Queue) -> None:
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
            if msg[0] == "stop":
                return
            if _handle(runtime, conn, msg):
                gauges.handled(msg)
        events = runtime.step() if runtime.has_work() else []
        gauges.attach(events)
        for ev in events:
            conn.send(("event", ev.req_id, ev.data, ev.done))
        gauges.flush()


class _Gauges:
    """Keeps the server's gauges (running, waiting, KV cells) current.

    The server has no channel for replica-wide figures, only each sequence's event stream,
    so the figures ride there: on the last event of every step (the freshest the server
    reads), and, when an admit or a cancel changed them but the step said nothing, on an
    event of their own sent on a sequence still alive. A cancel otherwise sends no event,
    and the gauges would keep counting a sequence that is gone.
    """

    def __init__(self, runtime, conn: Connection):
        self.runtime = runtime
        self.conn = conn
        self.live: dict[Any, None] = {}  # insertion-ordered set of sequences in the runtime
        self.changed = False

    def handled(self, msg: tuple) -> None:
        if msg[0] == "add":
            self.live[msg[1]] = None
        elif msg[0] == "cancel":
            self.live.pop(msg[1], None)
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
            self.conn.send(("event", carrier, {"stats": self.runtime.stats()}, False))
        self.changed = False


def _handle(runtime, conn: Connection, msg: tuple) -> bool:
    """Carry out one message; False when it failed (the error is sent to its request)."""
    kind, req_id = msg[0], msg[1]
    try:
        if kind == "infer":
            conn.send(("result", req_id, runtime.infer(msg[2])))
        elif kind == "add":
            runtime.add(req_id, msg[2])
        elif kind == "cancel":
            runtime.cancel(req_id)
    except AimassError as exc:
        conn.send(("error", req_id, exc))
    except Exception as exc:  # a runtime bug must not kill the replica
        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        conn.send(("error", req_id, ModelFailed(f"model {runtime.spec.name!r} failed: {detail}")))
    else:
        return True
    return False
