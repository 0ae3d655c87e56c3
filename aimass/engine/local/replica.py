"""Replicas as the scheduler sees them: a worker process (or thread) behind a pipe.

``submit`` sends a whole batch and awaits its result; ``stream`` admits a sequence to a
generative runtime and yields its events. The pipe is read on the event loop itself
(``add_reader``), so a result reaches its request without a thread hand-off. When the
process dies, the pipe reports EOF at once and
every request in flight fails with 503 naming the model — no waiting for a timeout.
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing as mp
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aimass.engine.local.worker import run_worker
from aimass.errors import AimassError, DeadlineExceeded, Unavailable
from aimass.runtimes.base import Payload
from aimass.spec import ModelSpec

_ids = itertools.count(1)
_PIPE_CLOSED = "worker closed its pipe"


class Replica:
    """One copy of a model; ``in_process`` runs the worker loop in a thread (tests only)."""

    def __init__(self, spec: ModelSpec, index: int, *, in_process: bool = False):
        self.spec = spec
        self.index = index
        self.in_process = in_process
        self.info: dict[str, Any] = {}
        self.alive = False
        self.on_exit: Callable[[Replica, str], None] | None = None
        self._conn = None
        self._proc: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._streams: dict[int, asyncio.Queue] = {}
        self._stopping = False

    @property
    def label(self) -> str:
        return f"model {self.spec.name!r} version {self.spec.version} replica {self.index}"

    @property
    def busy(self) -> int:
        return len(self._pending) + len(self._streams)

    @property
    def pid(self) -> int | None:
        return self.info.get("pid")

    async def start(self, load_timeout_s: float) -> None:
        """Start the worker and wait until its model is loaded; raise Unavailable if not."""
        self._loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.spec.verify_files)  # only the files the registry recorded
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe(duplex=True)
        args = (self.spec.model_dump_json(), child, self.in_process)
        if self.in_process:
            self._proc = threading.Thread(target=run_worker, args=args, daemon=True)
        else:
            self._proc = ctx.Process(target=run_worker, args=args, daemon=True)
        self._proc.start()
        if not self.in_process:
            child.close()
        self._conn = parent
        msg = await self._first_message(load_timeout_s)
        if msg[0] != "ready":
            self._kill()
            raise Unavailable(f"{self.label} failed to load: {msg[1]}")
        self.info = msg[1]
        self.alive = True
        self._loop.add_reader(parent.fileno(), self._on_readable)
        # uvloop's add_reader makes the fd non-blocking; Connection.recv/send
        # then raise BlockingIOError on any message bigger than the socket buffer (e.g. an
        # embeddings batch of 64 x 384 floats), which read as a crashed replica. Keep it blocking.
        os.set_blocking(parent.fileno(), True)

    async def _first_message(self, timeout_s: float) -> tuple:
        conn = self._conn
        ready = await asyncio.to_thread(_poll_until, conn, self._proc, timeout_s)
        if not ready:
            code = getattr(self._proc, "exitcode", None)
            why = f"worker exited with code {code}" if code is not None else "load timed out"
            return ("load_error", why)
        try:
            return conn.recv()
        except (EOFError, OSError):
            return ("load_error", f"worker exited with code {getattr(self._proc, 'exitcode', '?')}")

    async def submit(self, batch: Payload, deadline: float | None = None) -> Payload:
        """Run one batch on this replica."""
        self._require_alive()
        req_id = next(_ids)
        fut = self._loop.create_future()
        self._pending[req_id] = fut
        try:
            self._send(("infer", req_id, batch))
            return await fut
        finally:
            self._pending.pop(req_id, None)

    async def stream(self, request: dict, deadline: float | None = None) -> AsyncIterator[dict]:
        """Admit a sequence and yield its events; leaving early cancels it in the replica."""
        self._require_alive()
        req_id = next(_ids)
        inbox: asyncio.Queue = asyncio.Queue()
        self._streams[req_id] = inbox
        finished = False
        try:
            self._send(("add", req_id, request))
            while True:
                item = await self._next(inbox, deadline)
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                data, done = item
                finished = done
                yield data
                if done:
                    return
        finally:
            self._streams.pop(req_id, None)
            if not finished and self.alive:
                self._send(("cancel", req_id))

    async def _next(self, inbox: asyncio.Queue, deadline: float | None):
        if deadline is None:
            return await inbox.get()
        remaining = deadline - time.monotonic()
        try:
            return await asyncio.wait_for(inbox.get(), max(remaining, 0))
        except TimeoutError:
            raise DeadlineExceeded(
                f"{self.label}: request exceeded its deadline (limits.timeout_s)"
            ) from None

    def _require_alive(self) -> None:
        if not self.alive:
            raise Unavailable(f"{self.label} is not running")

    def _send(self, msg: tuple) -> None:
        try:
            self._conn.send(msg)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"{self.label} is not reachable: {exc}") from None

    def _on_readable(self) -> None:
        """Drain the pipe on the event loop: no reader thread, no cross-thread wake-up."""
        conn = self._conn
        try:
            while conn.poll(0):
                self._dispatch(conn.recv())
        except (EOFError, OSError):
            self._on_pipe_closed()

    def _on_pipe_closed(self) -> None:
        """Fail the requests in flight now; name the cause once the process is reaped.

        A killed process closes its pipe as it dies, so its exit code is usually there at
        once; a process that closed the pipe but lingers gets a short wait off the loop.
        """
        self._loop.remove_reader(self._conn.fileno())
        self.alive = False
        reason = self._exit_reason(wait_s=0)
        self._fail_all(
            Unavailable(f"{self.label} crashed ({reason}); the request was not completed")
        )
        if reason != _PIPE_CLOSED:
            self._on_eof(reason)
            return
        task = asyncio.ensure_future(asyncio.to_thread(self._exit_reason, 0.05))
        task.add_done_callback(lambda t: self._on_eof(t.result()))

    def _exit_reason(self, wait_s: float) -> str:
        if self.in_process:
            return "worker thread stopped"
        if wait_s:
            self._proc.join(timeout=wait_s)
        code = self._proc.exitcode
        if code is None:
            return _PIPE_CLOSED
        if code < 0:
            return f"worker killed by signal {-code}"
        return f"worker exited with code {code}"

    def _dispatch(self, msg: tuple) -> None:
        kind, req_id = msg[0], msg[1]
        if kind == "event":
            inbox = self._streams.get(req_id)
            if inbox is not None:
                inbox.put_nowait((msg[2], msg[3]))
            return
        if kind == "error" and req_id in self._streams:
            self._streams[req_id].put_nowait(msg[2])
            return
        fut = self._pending.get(req_id)
        if fut is None or fut.done():
            return
        if kind == "result":
            fut.set_result(msg[2])
        else:
            err = msg[2]
            fut.set_exception(err if isinstance(err, AimassError) else Unavailable(str(err)))

    def _on_eof(self, reason: str) -> None:
        if not self._stopping and self.on_exit is not None:
            self.on_exit(self, reason)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Ask the worker to finish, then make sure the process is gone (memory freed)."""
        self._stopping = True
        self.alive = False
        if self._conn is not None:
            try:
                self._conn.send(("stop",))
            except (OSError, ValueError):
                pass
        if self._proc is not None:
            await asyncio.to_thread(self._proc.join, grace_s)
        self._kill()

    def _stop_reading(self) -> None:
        if self._conn is not None and self._loop is not None and not self._conn.closed:
            self._loop.remove_reader(self._conn.fileno())

    def _fail_all(self, err: Unavailable) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(err)
        for inbox in self._streams.values():
            inbox.put_nowait(err)

    def _kill(self) -> None:
        self._stopping = True
        self._stop_reading()
        proc = self._proc
        if proc is not None and not self.in_process and proc.is_alive():
            proc.kill()
            proc.join(timeout=5)
        self._fail_all(Unavailable(f"{self.label} was stopped"))
        if self._conn is not None:
            self._conn.close()


def _poll_until(conn, proc, timeout_s: float) -> bool:
    """Wait for the worker's first message, giving up early if the process died."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if conn.poll(0.05):
            return True
        if not proc.is_alive():
            return conn.poll(0)
    return False
