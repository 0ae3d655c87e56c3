"""The loop that runs inside a replica: load the runtime, then serve messages from the server.

Runs in a spawned process (or, for tests, a thread). Batch runtimes read the pipe directly
and compute one batch at a time. For generative runtimes a reader thread drains the pipe
into an inbox at all times, so the server can always send; the main thread steps the runtime
whenever it has work and picks up new messages between steps — that is what lets a new
sequence join the running batch at the next step.

Messages in:  ("infer", id, payload) | ("add", id, request) | ("cancel", id) | ("stop",)
Messages out: ("ready", info) | ("load_error", text) | ("result", id, outputs)
              | ("error", id, AimassError) | ("event", id, data, done)
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
            _handle(runtime, conn, msg)
        if runtime.has_work():
            for ev in runtime.step():
                conn.send(("event", ev.req_id, ev.data, ev.done))


def _handle(runtime, conn: Connection, msg: tuple) -> None:
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
