"""/v1/files throughput and memory: uploads and downloads over HTTP against the disk itself.

One server (``aimass serve``, no models) and one file of ``--mb`` random megabytes; each round,
interleaved so that the machine's load hits both sides alike:

* ``disk copy``   a floor: the same bytes copied file to file with ``fsync`` (what an upload
  must at least do: read them, write them durably), in this process, no HTTP;
* ``bare HTTP``   the baseline: a bare Starlette app on uvicorn (the same HTTP stack, no
  middleware) writing the raw request body to a file with ``fsync``, the file sent by httpx;
* ``upload``      ``POST /v1/files`` with httpx streaming the file (multipart), which the
  server streams into storage, hashing it, then fsyncs, renames and records;
* ``download``    ``GET /v1/files/{id}/content`` read to the end, against reading the file.

MB/s per path (median of ``--rounds``), the ratios, and the server's peak RSS growth (VmHWM)
over the whole run next to the file size: an upload held in memory would grow it by the
file's size. Appended to benchmarks/RESULTS.md.

    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_files.py --mb 256 --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from common import append_section, command, machine_note, stamp

from tests.conftest import free_port, run_server

BARE_APP = """
import os
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

async def raw(request):
    with open(os.environ["BARE_TARGET"], "wb") as f:
        async for chunk in request.stream():
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    return Response("ok")

app = Starlette(routes=[Route("/raw", raw, methods=["POST"])])
"""


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def disk_copy(src: Path, dst: Path) -> float:
    start = time.perf_counter()
    with src.open("rb") as f, dst.open("wb") as g:
        shutil.copyfileobj(f, g, 1024 * 1024)
        g.flush()
        os.fsync(g.fileno())
    took = time.perf_counter() - start
    dst.unlink()
    return took


def disk_read(src: Path) -> float:
    start = time.perf_counter()
    with src.open("rb") as f:
        while f.read(1024 * 1024):
            pass
    return time.perf_counter() - start


def bare_server(tmp: Path) -> tuple[subprocess.Popen, str]:
    (tmp / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    env = {**os.environ, "BARE_TARGET": str(tmp / "bare.bin")}
    cmd = [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port),
           "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=tmp, env=env)
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(base)
            return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the bare server did not start")


def bare_upload(base: str, src: Path) -> float:
    start = time.perf_counter()
    with src.open("rb") as f:
        httpx.post(f"{base}/raw", content=f, timeout=600).raise_for_status()
    return time.perf_counter() - start


def upload(base: str, src: Path) -> tuple[float, str]:
    start = time.perf_counter()
    with src.open("rb") as f:
        r = httpx.post(f"{base}/v1/files", files={"file": (src.name, f)},
                       data={"purpose": "user_data"}, timeout=600)  # fmt: skip
    r.raise_for_status()
    return time.perf_counter() - start, r.json()["id"]


def download(base: str, file_id: str, size: int) -> float:
    start, got = time.perf_counter(), 0
    with httpx.stream("GET", f"{base}/v1/files/{file_id}/content", timeout=600) as r:
        for piece in r.iter_raw(1024 * 1024):
            got += len(piece)
    assert got == size, (got, size)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size = args.mb * 1024 * 1024
    times: dict[str, list[float]] = {"disk copy": [], "bare HTTP": [], "upload": [],
                                     "disk read": [], "download": []}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        src = tmp_path / "data.bin"
        with src.open("wb") as f:
            for _ in range(args.mb):
                f.write(os.urandom(1024 * 1024))
        env = {"AIMASS_MAX_FILE_BYTES": str(2 * size)}
        bare, bare_base = bare_server(tmp_path)
        with run_server(tmp_path, [], env=env) as server:
            rss_before = peak_rss_mb(server.proc.pid)
            for _ in range(args.rounds):
                times["disk copy"].append(disk_copy(src, tmp_path / "copy.bin"))
                times["bare HTTP"].append(bare_upload(bare_base, src))
                took, file_id = upload(server, src)
                times["upload"].append(took)
                times["disk read"].append(disk_read(src))
                times["download"].append(download(server, file_id, size))
                httpx.delete(f"{server}/v1/files/{file_id}").raise_for_status()
            rss_after = peak_rss_mb(server.proc.pid)
        bare.terminate()
        bare.wait()
    rate = {k: args.mb / statistics.median(v) for k, v in times.items()}
    lines = [
        f"## Files: upload and download over HTTP vs the disk ({stamp()})",
        "",
        f"`flock /tmp/bench.lock {command('bench_files.py', args, ['--mb', '--rounds'])}`",
        "",
        f"One file of {args.mb} MiB, {args.rounds} interleaved rounds, median; {machine_note()}.",
        "",
        "| path | MB/s | vs its baseline |",
        "|---|---|---|",
        f"| disk copy with fsync (a floor, no HTTP) | {rate['disk copy']:.0f} | |",
        f"| bare Starlette/uvicorn, raw body to disk with fsync (baseline) | "
        f"{rate['bare HTTP']:.0f} | 1.00x |",
        f"| `POST /v1/files` (multipart, sha256, fsync, rename, row) | {rate['upload']:.0f} | "
        f"{rate['upload'] / rate['bare HTTP']:.2f}x |",
        f"| disk read (baseline) | {rate['disk read']:.0f} | 1.00x |",
        f"| `GET /v1/files/{{id}}/content` | {rate['download']:.0f} | "
        f"{rate['download'] / rate['disk read']:.2f}x |",
        "",
        f"Server peak RSS (VmHWM): {rss_before:.0f} MiB after start, {rss_after:.0f} MiB after "
        f"{args.rounds} uploads and downloads of {args.mb} MiB: grown by "
        f"{rss_after - rss_before:.0f} MiB, so a file is never held whole in memory.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    append_section(text)


if __name__ == "__main__":
    main()
