"""Heavy job work (training) in a child process at the lowest CPU priority, reporting back on
its stdout.

Online requests keep their latency only if a job's compute never runs on the server's event
loop or threads: ``run_child`` starts the work under ``nice -n 19`` with its math libraries
limited to ``threads`` threads, in the job's folder. The child writes one JSON object a line
on stdout, each understood as:

- ``{"event": "message", "level": "info", "data": {...}}`` → ``job.event``
  (a fine-tuning step's loss, a checkpoint's metrics);
- ``{"progress": {...}}`` → ``job.progress``;
- ``{"checkpoint": {...}}`` → ``job.save_checkpoint`` (the child writes the state itself in
  the job folder, then names it here; a resumed attempt finds it in ``job.checkpoint`` and
  passes it to the next child);

and any other line becomes a ``log`` event. A cancel terminates the child (killed after
``STOP_GRACE_S``) and raises ``JobCancelled``; a non-zero exit raises ``JobFailed`` quoting the
last ``MAX_LOG_EVENTS`` such lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import deque
from collections.abc import Sequence

from aimass.jobs.kind import JobCancelled, JobContext, JobFailed

STOP_GRACE_S = 3.0
MAX_LOG_EVENTS = 20
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "TORCH_NUM_THREADS",
)


async def run_child(job: JobContext, argv: Sequence[str], threads: int = 1) -> None:
    """Run ``argv`` as the job's low-priority child until it exits; see the module note."""
    env = {
        **os.environ,
        **{v: str(threads) for v in THREAD_VARIABLES},
        "AIMASS_JOB_DIR": str(job.workdir),
    }
    proc = await asyncio.create_subprocess_exec(
        "nice",
        "-n",
        "19",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=job.workdir,
        env=env,
    )
    tail: deque[str] = deque(maxlen=MAX_LOG_EVENTS)
    reader = asyncio.create_task(_read(job, proc, tail))
    stop = asyncio.create_task(job.cancelled.wait())
    try:
        await asyncio.wait({reader, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if proc.returncode is None and not reader.done():
            await _terminate(proc)
        stop.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    if job.cancelled.is_set():
        raise JobCancelled(job.id)
    code = await proc.wait()
    if code != 0:
        raise JobFailed(f"the job's process exited with {code}: {' | '.join(tail)}")


async def _read(job: JobContext, proc: asyncio.subprocess.Process, tail: deque[str]) -> None:
    assert proc.stdout is not None
    async for raw in proc.stdout:
        text = raw.decode(errors="replace").rstrip()
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            tail.append(text)
            await job.event(text[:1000], "log")
        elif "checkpoint" in message:
            await job.save_checkpoint(message["checkpoint"])
        elif "progress" in message:
            await job.progress(**message["progress"])
        else:
            data = message.get("data") or {}
            await job.event(str(message.get("event", "")), message.get("level", "info"), **data)
    await proc.wait()


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    proc.terminate()
    try:
        async with asyncio.timeout(STOP_GRACE_S):
            await proc.wait()
    except TimeoutError:
        proc.kill()
        await proc.wait()
