"""The local backend of ``engine/replica``: a worker process (or thread) behind a pipe.

``submit`` sends a whole batch and awaits its result; ``stream`` admits a sequence to a
generative runtime and yields its events. What crosses the pipe are the declared messages of
``messages`` as MessagePack bytes. The pipe is read on the event loop itself (``add_reader``),
so a result reaches its request without a thread hand-off, one ``read`` for all the messages
that are there (``frames``). When the process dies, the pipe
reports EOF at once and every request in flight fails with 503 naming the model — no waiting
for a timeout.

A replica's ``state`` goes ``starting`` → ``ready``, and ends ``stopped`` (the server stopped
it, or it never loaded) or ``exited`` (it went away by itself; its deployment restarts it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec

from aimass import metrics_llm
from aimass.engine.local import messages as m
from aimass.engine.local.frames import FrameReader
from aimass.engine.local.worker import run_worker
from aimass.engine.replica import (
    ReplicaBase,
    ReplicaState,
    account,
    batch_outputs,
    encode_add,
    replica_lost,
)
from aimass.errors import AimassError, DeadlineExceeded, Unavailable
from aimass.runtimes.base import Payload
from aimass.spec import ModelSpec

log = logging.getLogger("aimass.replica")
_ids = itertools.count(1)
_PIPE_CLOSED = "worker closed its pipe"


class LocalReplica(ReplicaBase):
    """One copy of a model; ``in_process`` runs the worker loop in a thread (tests only)."""

    def __init__(self, spec: ModelSpec, index: int, *, in_process: bool = False):
        super().__init__(spec, index)
        self.in_process = in_process
        self._conn = None
        self._frames: FrameReader | None = None
        self._proc: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, asyncio.Future] = {}
        self._streams: dict[int, asyncio.Queue] = {}

    @property
    def busy(self) -> int:
        return len(self._pending) + len(self._streams)

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
        if not isinstance(msg, m.Ready):
            self._kill()
            raise Unavailable(f"{self.label} failed to load: {msg.message}")
        self.info = msg.info
        self.state = ReplicaState.READY
        self._frames = FrameReader(parent.fileno())
        self._loop.add_reader(parent.fileno(), self._on_readable)
        # uvloop's add_reader makes the fd non-blocking; Connection.recv/send
        # then raise BlockingIOError on any message bigger than the socket buffer (e.g. an
        # embeddings batch of 64 x 384 floats), which read as a crashed replica. Keep it blocking.
        os.set_blocking(parent.fileno(), True)

    async def _first_message(self, timeout_s: float) -> m.Ready | m.LoadError:
        conn = self._conn
        ready = await asyncio.to_thread(_poll_until, conn, self._proc, timeout_s)
        if not ready:
            code = getattr(self._proc, "exitcode", None)
            why = f"worker exited with code {code}" if code is not None else "load timed out"
            return m.LoadError(why)
        try:
            msg = m.decode_to_server(conn.recv_bytes())
        except (EOFError, OSError):
            return m.LoadError(f"worker exited with code {getattr(self._proc, 'exitcode', '?')}")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return m.LoadError(f"its first message could not be read: {exc}")
        if not isinstance(msg, m.Ready | m.LoadError):
            return m.LoadError(f"it sent {type(msg).__name__} before it was ready")
        return msg

    async def submit(self, batch: Payload, deadline: float | None = None) -> Payload:
        """Run one batch on this replica."""
        self._require_alive()
        req_id = next(_ids)
        fut = self._loop.create_future()
        self._pending[req_id] = fut
        try:
            self._send(m.encode(m.Infer(req_id, m.encode_payload(batch))))
            return await fut
        finally:
            self._pending.pop(req_id, None)

    async def stream(
        self, request: dict[str, Any], deadline: float | None = None
    ) -> AsyncIterator[m.GenerationEvent]:
        """Admit a sequence and yield its events; leaving early cancels it in the replica."""
        self._require_alive()
        req_id = next(_ids)
        add = encode_add(req_id, request)
        inbox: asyncio.Queue = asyncio.Queue()
        self._streams[req_id] = inbox
        finished = False
        try:
            self._send(add)
            while True:
                item = await self._next(inbox, deadline)
                if isinstance(item, BaseException):
                    finished = True
                    raise item
                finished = item.done
                yield item.event
                if item.done:
                    return
        finally:
            self._streams.pop(req_id, None)
            if not finished and self.alive:
                self._send(m.encode(m.Cancel(req_id)))
            if not self._streams:
                metrics_llm.record_replica_idle(
                    self.spec.name, self.spec.version, self.index, self._last_stats
                )

    async def _next(self, inbox: asyncio.Queue, deadline: float | None):
        """The stream's next item by ``deadline``.

        ``asyncio.timeout``, not ``wait_for``: on Python 3.11, ``wait_for`` returns the item and
        drops a cancellation that arrives as the item does, so a client that left at that
        moment kept its sequence decoding to the end (seen in CI, reproduced 1 in 8).
        """
        if deadline is None:
            return await inbox.get()
        remaining = deadline - time.monotonic()
        try:
            async with asyncio.timeout(max(remaining, 0)):
                return await inbox.get()
        except TimeoutError:
            raise DeadlineExceeded(
                f"{self.label}: request exceeded its deadline (limits.timeout_s)"
            ) from None

    def _require_alive(self) -> None:
        if not self.alive:
            raise Unavailable(f"{self.label} is not running")

    def _send(self, raw: bytes) -> None:
        try:
            self._conn.send_bytes(raw)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"{self.label} is not reachable: {exc}") from None

    def _on_readable(self) -> None:
        """Drain the pipe on the event loop: no reader thread, no cross-thread wake-up."""
        try:
            frames = self._frames.read()
        except (EOFError, OSError):
            self._on_pipe_closed()
            return
        try:
            for raw in frames:
                self._dispatch(m.decode_to_server(raw))
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self._on_unreadable(exc)

    def _on_unreadable(self, exc: Exception) -> None:
        """A message the server cannot read means the worker is broken (a bug, never a
        client's input): fail what is in flight and end it, so its deployment restarts it."""
        reason = f"sent a message the server cannot read ({exc})"
        log.error("%s %s", self.label, reason)
        self._loop.remove_reader(self._conn.fileno())
        self.state = ReplicaState.EXITED
        self._fail_all(replica_lost(self.label, reason))
        self._proc_kill()
        self._on_eof(reason)

    def _on_pipe_closed(self) -> None:
        """Fail the requests in flight now; name the cause once the process is reaped.

        A killed process closes its pipe as it dies, so its exit code is usually there at
        once; a process that closed the pipe but lingers gets a short wait off the loop.
        """
        self._loop.remove_reader(self._conn.fileno())
        if self.state is ReplicaState.READY:
            self.state = ReplicaState.EXITED
        reason = self._exit_reason(wait_s=0)
        self._fail_all(replica_lost(self.label, f"crashed ({reason})"))
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

    def _dispatch(self, msg: m.ToServer) -> None:
        if isinstance(msg, m.Event):
            self._last_stats = account(self.spec, self.index, msg.event) or self._last_stats
            inbox = self._streams.get(msg.id)
            if inbox is not None:
                inbox.put_nowait(msg)
            return
        if not isinstance(msg, m.Result | m.Failed):
            return  # Ready or LoadError come only first, and were read by ``start``
        if isinstance(msg, m.Failed) and msg.id in self._streams:
            self._streams[msg.id].put_nowait(msg.error.exception())
            return
        fut = self._pending.get(msg.id)
        if fut is None or fut.done():
            return
        try:
            fut.set_result(batch_outputs(msg))
        except AimassError as exc:
            fut.set_exception(exc)

    def _on_eof(self, reason: str) -> None:
        if self.state is ReplicaState.EXITED and self.on_exit is not None:
            self.on_exit(self, reason)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Ask the worker to finish, then make sure the process is gone (memory freed)."""
        self.state = ReplicaState.STOPPING
        if self._conn is not None:
            try:
                self._conn.send_bytes(m.encode(m.Stop()))
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
        self.state = ReplicaState.STOPPED
        self._stop_reading()
        self._proc_kill()
        self._fail_all(Unavailable(f"{self.label} was stopped"))
        if self._conn is not None:
            self._conn.close()

    def _proc_kill(self) -> None:
        proc = self._proc
        if proc is not None and not self.in_process and proc.is_alive():
            proc.kill()
            proc.join(timeout=5)


def _poll_until(conn, proc, timeout_s: float) -> bool:
    """Wait for the worker's first message, giving up early if the process died."""
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if conn.poll(0.05):
            return True
        if not proc.is_alive():
            return conn.poll(0)
    return False
