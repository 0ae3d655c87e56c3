"""Helpers shared by the serving-core benchmarks: servers, request bodies, a lean HTTP
client, percentiles and the RESULTS.md section writer.

The benchmarks run on a 2-core machine that other people use at the same time, so every
script measures its baseline in the same run, interleaved, and reports the machine load.

``RawClient`` is a minimal HTTP/1.1 keep-alive client on asyncio streams. It exists because
the load generator shares the 2 cores with the server: httpx spends roughly 0.2-0.5 ms of
CPU per request, which on this machine would be taken straight from the server under test.
The raw client sends pre-encoded request bytes and reads ``Content-Length`` answers only
(which is all uvicorn sends for these routes).
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.conftest import Server, run_server  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS.md"
HEADER = (
    "# Benchmark results\n\n"
    "Each section is written by one script in `benchmarks/` (the exact command is given); "
    "each script measures its baseline in the same run. Running a script again replaces "
    "its section.\n"
)
V2_DTYPES = {np.dtype(np.float32): "FP32", np.dtype(np.int64): "INT64"}


# ---- statistics ----------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def pcts(values: list[float]) -> tuple[float, float, float]:
    return percentile(values, 0.5), percentile(values, 0.9), percentile(values, 0.99)


# ---- servers and bodies --------------------------------------------------------------------


@contextmanager
def serve(tmp: Path, models: list[dict], extra_args: list[str] = ()) -> Iterator[Server]:
    """An ``aimass serve`` subprocess (same launcher as the integration tests)."""
    with run_server(tmp, models, extra_args=list(extra_args)) as server:
        yield server


@contextmanager
def revision_tree(rev: str, parent: Path) -> Iterator[Path]:
    """A detached git worktree of ``rev`` under ``parent``, removed (with its git entry) at
    the end: another revision's code to serve next to this tree's, in the same run."""
    path = parent / f"rev-{rev.replace('/', '_')}"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--quiet", str(path), rev],
        cwd=ROOT,
        check=True,
    )
    try:
        yield path
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, check=False)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, check=False)


def tree_label(tree: Path) -> str:
    """The commit a tree is at, with ``+ uncommitted changes`` when tracked files differ."""
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=tree,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{head} + uncommitted changes" if dirty else head


def tree_env(tree: Path) -> dict[str, str]:
    """Environment that makes this venv's python import ``aimass`` from ``tree``: the
    editable install's finder comes after ``PYTHONPATH`` (and after the working directory)."""
    return {"PYTHONPATH": str(tree)}


def check_imports_from(tree: Path) -> Path:
    """Where ``aimass`` comes from for a server started in ``tree``; RuntimeError if that is not
    ``tree``'s own package (the comparison would then measure one version twice)."""
    found = subprocess.run(
        [sys.executable, "-c", "import aimass; print(aimass.__file__)"],
        cwd=tree,
        env={**os.environ, **tree_env(tree)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    origin = Path(found).resolve()
    if not origin.is_relative_to(tree.resolve() / "aimass"):
        raise RuntimeError(f"python started in {tree} imports aimass from {origin}, not the tree")
    return origin


@contextmanager
def serve_tree(
    tmp: Path, tree: Path, models: list[dict], timeout_s: float = 300
) -> Iterator[Server]:
    """``serve`` running ``tree``'s code (cwd and ``PYTHONPATH`` in it, this venv's packages),
    after checking that its python imports ``aimass`` from there."""
    check_imports_from(tree)
    with run_server(tmp, models, env=tree_env(tree), cwd=tree, timeout_s=timeout_s) as server:
        yield server


def worker_pids(server: Server) -> list[int]:
    """Pids of the server's replica processes (for py-spy when profiling)."""
    import httpx

    pids = []
    for entry in httpx.post(server + "/v2/repository/index", json={}, timeout=10).json():
        meta = httpx.get(f"{server}/v2/models/{entry['name']}", timeout=10).json()
        pids += meta["parameters"].get("pids", [])
    return pids


def descendants(pid: int) -> list[int]:
    """The processes under ``pid`` (a server's replicas and multiprocessing's helper)."""
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split():
            found += [int(child), *descendants(int(child))]
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of ``pids`` so far (field 14 and 15 of ``/proc/PID/stat``)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def json_body(inputs: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """A v2 infer request with the tensors as JSON ``data`` lists."""
    body = {
        "inputs": [
            {
                "name": name,
                "shape": list(arr.shape),
                "datatype": V2_DTYPES[arr.dtype],
                "data": arr.reshape(-1).tolist(),
            }
            for name, arr in inputs.items()
        ]
    }
    return json.dumps(body, separators=(",", ":")).encode(), {"content-type": "application/json"}


def binary_body(inputs: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """A v2 infer request with the tensors (and the outputs asked for) as binary data."""
    entries, tail = [], b""
    for name, arr in inputs.items():
        raw = np.ascontiguousarray(arr).tobytes()
        entries.append(
            {
                "name": name,
                "shape": list(arr.shape),
                "datatype": V2_DTYPES[arr.dtype],
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        tail += raw
    head = json.dumps(
        {"inputs": entries, "parameters": {"binary_data_output": True}}, separators=(",", ":")
    ).encode()
    headers = {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(head)),
    }
    return head + tail, headers


# ---- a lean HTTP/1.1 client ----------------------------------------------------------------


def run_async(coro):
    """Run the load generator on uvloop (less client CPU taken from the server) if present."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def raw_request(server: Server, path: str, body: bytes | None, headers: dict[str, str]) -> bytes:
    """Pre-encode one HTTP/1.1 request (POST with a body, GET without)."""
    method = "GET" if body is None else "POST"
    lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{server.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None:
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


class RawClient:
    """One keep-alive connection; ``send`` writes pre-encoded bytes and returns the status."""

    def __init__(self, port: int):
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> RawClient:
        self._reader, self._writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def send(self, request: bytes) -> tuple[int, bytes]:
        try:
            return await self._send(request)
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            if getattr(exc, "partial", b""):
                raise
            # uvicorn closes keep-alive connections idle for 5 s; open a new one, once.
            self.close()
            await self.connect()
            return await self._send(request)

    async def _send(self, request: bytes) -> tuple[int, bytes]:
        self._writer.write(request)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await self._reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


async def closed_loop(
    server: Server,
    path: str,
    bodies: Iterator[bytes],
    clients: int,
    seconds: float | None = None,
) -> tuple[float, list[float]]:
    """``clients`` keep-alive connections, each posting the next JSON body of ``bodies`` to
    ``path`` as soon as its previous answer came, until ``bodies`` runs out or ``seconds``
    pass. Requests/s and per-request latencies; an answer other than 200 raises with its body."""
    latencies: list[float] = []
    stop = time.perf_counter() + seconds if seconds is not None else float("inf")
    headers = {"content-type": "application/json"}

    async def client() -> None:
        http = await RawClient(server.port).connect()
        try:
            for body in bodies:
                t = time.perf_counter()
                if t >= stop:
                    return
                status, answer = await http.send(raw_request(server, path, body, headers))
                if status != 200:
                    raise AssertionError(f"{path} answered {status}: {answer[:500]!r}")
                latencies.append(time.perf_counter() - t)
        finally:
            http.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return len(latencies) / (time.perf_counter() - start), latencies


# ---- reporting -----------------------------------------------------------------------------


def machine_note() -> str:
    """What the numbers were measured on, including load from other people at the time."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average at the end {load} (shared machine: other jobs were running)"
    )


def stamp() -> str:
    return f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"


def command(script: str, args: Any, flags: list[str]) -> str:
    """The exact command line that reproduces a run, from the parsed arguments."""
    parts = [".venv/bin/python", f"benchmarks/{script}"]
    for flag in flags:
        value = getattr(args, flag.lstrip("-").replace("-", "_"))
        if isinstance(value, bool):
            parts += [flag] if value else []
        elif isinstance(value, list):
            parts += [flag, *(str(v) for v in value)]
        else:
            parts += [flag, str(value)]
    return " ".join(parts)


def append_section(text: str) -> None:
    """Write one section to RESULTS.md, replacing an earlier run of the same benchmark.

    A section starts with a ``## `` heading; two headings name the same benchmark when they
    agree up to the first `` (`` (the date and details in parentheses differ between runs).
    """
    body = text.strip("\n") + "\n"
    current = RESULTS.read_text() if RESULTS.exists() else HEADER
    sections = re.split(r"(?m)^(?=## )", current)
    key = _section_key(body)
    kept = [s for s in sections if not s.startswith("## ") or _section_key(s) != key]
    if len(kept) == len(sections):
        kept.append(body)
    else:
        at = next(i for i, s in enumerate(sections) if _section_key(s) == key)
        kept.insert(at, body)
    RESULTS.write_text("\n\n".join(part.strip("\n") for part in kept if part.strip()) + "\n")


def _section_key(section: str) -> str:
    heading = section.split("\n", 1)[0]
    return heading.split(" (", 1)[0].strip()


def table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return lines


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


# ---- server-side figures -------------------------------------------------------------------


def server_stats(server: Server, model: str) -> dict[str, float]:
    """Means and counts from the server's Prometheus histograms for ``model``: seconds per
    stage (``queue``, ``compute``, ``total``), rows per batch, and requests per status."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(server + "/metrics", timeout=10).text
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") != model:
                continue
            key = sample.name
            if "stage" in sample.labels:
                key += ":" + sample.labels["stage"]
            if "status" in sample.labels:
                key += ":" + sample.labels["status"]
            sums[key] = sums.get(key, 0.0) + sample.value
    out: dict[str, float] = {}
    for stage in ("queue", "compute", "total"):
        count = sums.get(f"aimass_request_latency_seconds_count:{stage}", 0.0)
        if count:
            out[f"{stage}_ms"] = sums[f"aimass_request_latency_seconds_sum:{stage}"] / count * 1e3
    batches = sums.get("aimass_batch_size_count", 0.0)
    if batches:
        out["rows_per_batch"] = sums["aimass_batch_size_sum"] / batches
        out["batches"] = batches
    for key, value in sums.items():
        if key.startswith("aimass_requests_total:"):
            out["status_" + key.rsplit(":", 1)[1]] = value
    return out
