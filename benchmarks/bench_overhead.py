"""Latency AI Mass adds to a tiny ONNX model at concurrency 1, against calling onnxruntime.

The model is ``a + b`` / ``a - b`` on 1×4 floats, so nearly all of the measured time is
serving overhead. Per round, in rotating order, the script times:

- ``direct``: ``InferenceSession.run`` in this process (same session options as the
  replica: 1 intra-op thread, all graph optimizations) — the baseline;
- ``httpx``: a v2 JSON infer through the server with a persistent ``httpx.Client``;
- ``raw``: the same request bytes through a bare keep-alive socket client (shows how much of
  the ``httpx`` figure is the Python client itself);
- ``floor``: ``GET /v2/health/live`` through the bare client — uvicorn, the middleware and
  routing, with no model work: the HTTP floor of this server.

The server's own histograms then split the mean of an infer into deployment time (batcher
queue + replica compute including the pipe round trip) and everything above it.
The claim: p50(httpx) - p50(direct) <= 1 ms.

    .venv/bin/python benchmarks/bench_overhead.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from common import (
    RawClient,
    append_section,
    command,
    json_body,
    machine_note,
    pcts,
    raw_request,
    run_async,
    serve,
    server_stats,
    stamp,
    table,
)

from tests.conftest import make_add_model, onnx_spec

WARMUP = 200
SIDES = ("direct", "httpx", "raw", "floor")


def ort_session(path: Path):
    from aimass.runtimes.onnx_session import make_session

    return make_session(str(path), 1)


async def measure(path: Path, server, total: int) -> dict[str, list[float]]:
    """Alternate the sides request by request; the order rotates every round."""
    a = np.array([[1, 2, 3, 4]], np.float32)
    feed = {"a": a, "b": a.copy()}
    body, headers = json_body(feed)
    url = f"{server}/v2/models/add/infer"
    infer_bytes = raw_request(server, "/v2/models/add/infer", body, headers)
    live_bytes = raw_request(server, "/v2/health/live", None, {})
    session = ort_session(path)
    raw = await RawClient(server.port).connect()
    times: dict[str, list[float]] = {s: [] for s in SIDES}
    with httpx.Client(timeout=30) as client:

        async def once(side: str) -> float:
            start = time.perf_counter()
            if side == "direct":
                session.run(None, feed)
            elif side == "httpx":
                status = client.post(url, content=body, headers=headers).status_code
                _check(status)
            elif side == "raw":
                _check((await raw.send(infer_bytes))[0])
            else:
                _check((await raw.send(live_bytes))[0])
            return (time.perf_counter() - start) * 1e3

        for i in range(total + WARMUP):
            for k in range(len(SIDES)):
                side = SIDES[(i + k) % len(SIDES)]
                took = await once(side)
                if i >= WARMUP:
                    times[side].append(took)
    raw.close()
    return times


def _check(status: int) -> None:
    if status != 200:
        raise RuntimeError(f"request failed with HTTP {status}")


def report(times: dict[str, list[float]], stats: dict[str, float], args) -> str:
    labels = {
        "direct": "direct onnxruntime `session.run` (baseline)",
        "httpx": "AI Mass v2 JSON infer, httpx.Client keep-alive",
        "raw": "AI Mass v2 JSON infer, bare socket client",
        "floor": "HTTP floor: GET /v2/health/live, bare socket client",
    }
    rows = []
    for side in SIDES:
        p50, p90, p99 = pcts(times[side])
        rows.append([labels[side], p50, p90, p99, statistics.fmean(times[side])])
    base = pcts(times["direct"])[0]
    added = pcts(times["httpx"])[0] - base
    added_raw = pcts(times["raw"])[0] - base
    verdict = "meets" if added <= 1.0 else "MISSES"
    deployment = stats.get("total_ms", float("nan"))
    lines = [
        f"## Serving overhead, tiny ONNX model, concurrency 1 ({stamp()})",
        "",
        f"`{command('bench_overhead.py', args, ['--requests'])}` — {machine_note()}.",
        f"{args.requests} timed rounds after {WARMUP} warm-up rounds; each round times the four "
        "rows below once, in rotating order. Model: `make_add_model` (1×4 FP32 `a+b`, `a-b`), "
        "1 replica process, 1 intra-op thread, default batching (max_batch_size 8, "
        "max_delay_ms 0). All times in ms, measured at the client.",
        "",
        *table(["path", "p50", "p90", "p99", "mean"], rows),
        "",
        f"Added latency at p50: **{added:+.3f} ms** with httpx ({verdict} the ≤ 1 ms goal), "
        f"{added_raw:+.3f} ms with the bare client.",
        f"Server-side means over all infer requests: deployment (batcher + pipe + replica) "
        f"{deployment:.3f} ms, of which queue {stats.get('queue_ms', float('nan')):.3f} ms "
        f"and replica round trip {stats.get('compute_ms', float('nan')):.3f} ms; the rest of "
        "the bare-client mean is HTTP, middleware, routing and v2 decode/encode.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000, help="Timed rounds.")
    parser.add_argument("--no-append", action="store_true", help="Print only.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = make_add_model(tmp / "add.onnx")
        with serve(tmp, [onnx_spec("add", path)]) as server:
            times = run_async(measure(path, server, args.requests))
            stats = server_stats(server, "add")
    text = report(times, stats, args)
    print(text)
    if not args.no_append:
        append_section(text)


if __name__ == "__main__":
    main()
