"""Batches: throughput of a batch against the same requests sent online, and what a running
batch does to online latency, on the built-in all-MiniLM-L6-v2 (int8), in one run.

1. Throughput, interleaved ``--rounds`` times on an otherwise idle server: ``--lines``
   embeddings requests (one sentence each) sent online by ``--clients`` concurrent keep-alive
   clients, then the same requests as one batch (``/v1/files`` + ``/v1/batches``, timed from
   create to ``completed``, validation and output file included, started once the server has
   been idle for ``batch_yield_s``). The goal is a batch at ≥ 0.8× the online throughput.
2. Latency: a steady light load (one request every ``--interval-ms``, open loop) for
   ``--duration`` seconds on the idle server, then again while a large batch runs (it is
   cancelled afterwards). The goal is an online p99 with the batch ≤ 1.5× the idle p99.

Each value of ``--in-flight`` (the server's ``batch_max_in_flight``) gets its own server.
Tables and the exact command are appended to benchmarks/RESULTS.md. Run it under the lock:

    flock /tmp/bench.lock env PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_batches.py
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from pathlib import Path

import httpx
from common import (
    RawClient,
    append_section,
    command,
    machine_note,
    pcts,
    raw_request,
    run_async,
    stamp,
    table,
)

from tests.conftest import Server, run_server

SENTENCES = [
    f"Sentence number {i} is about {w}."
    for i, w in enumerate(["trains", "bread", "robots", "maps", "rain", "music", "tea"] * 400)
]
FINISHED = {"completed", "failed", "cancelled", "expired"}
YIELD_S = 1.0
"""The server's ``batch_yield_s`` (its default): how long a batch gives way after online calls."""


def body(model: str, i: int) -> dict:
    return {"model": model, "input": SENTENCES[i % len(SENTENCES)]}


# ---- online load ---------------------------------------------------------------------------


async def _online(server: Server, model: str, lines: int, clients: int) -> float:
    """Seconds to send ``lines`` requests with ``clients`` concurrent connections."""
    requests = [
        raw_request(
            server,
            "/v1/embeddings",
            json.dumps(body(model, i)).encode(),
            {"content-type": "application/json"},
        )
        for i in range(lines)
    ]
    todo = iter(requests)
    conns = [await RawClient(server.port).connect() for _ in range(clients)]

    async def worker(conn: RawClient) -> None:
        for request in todo:
            status, answer = await conn.send(request)
            assert status == 200, answer[:200]

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in conns))
    took = time.perf_counter() - started
    for c in conns:
        c.close()
    return took


async def _steady(server: Server, model: str, seconds: float, interval_s: float) -> list[float]:
    """Latencies (s) of one request every ``interval_s`` (open loop) for ``seconds``."""
    request = raw_request(
        server,
        "/v1/embeddings",
        json.dumps(body(model, 3)).encode(),
        {"content-type": "application/json"},
    )
    pool = [await RawClient(server.port).connect() for _ in range(8)]
    latencies: list[float] = []

    async def one(conn: RawClient) -> None:
        started = time.perf_counter()
        status, _ = await conn.send(request)
        if status == 200:
            latencies.append(time.perf_counter() - started)
        pool.append(conn)

    tasks = []
    end = time.perf_counter() + seconds
    next_at = time.perf_counter()
    while next_at < end:
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        conn = pool.pop() if pool else await RawClient(server.port).connect()
        tasks.append(asyncio.create_task(one(conn)))
        next_at += interval_s
    await asyncio.gather(*tasks)
    for c in pool:
        c.close()
    return latencies


# ---- batches -------------------------------------------------------------------------------


def upload(server: Server, model: str, lines: int) -> str:
    """An input file of ``lines`` embeddings requests; its id."""
    data = b"".join(
        json.dumps(
            {
                "custom_id": f"r{i}",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": body(model, i),
            }
        ).encode()
        + b"\n"
        for i in range(lines)
    )
    files = {"file": ("in.jsonl", data)}
    made = httpx.post(f"{server}/v1/files", files=files, data={"purpose": "batch"}, timeout=60)
    return made.json()["id"]


def create(server: Server, file_id: str) -> str:
    request = {"input_file_id": file_id, "endpoint": "/v1/embeddings", "completion_window": "24h"}
    return httpx.post(f"{server}/v1/batches", json=request, timeout=60).json()["id"]


def submit(server: Server, model: str, lines: int) -> str:
    return create(server, upload(server, model, lines))


def wait(server: Server, batch_id: str, poll_s: float = 0.05) -> dict:
    while True:
        batch = httpx.get(f"{server}/v1/batches/{batch_id}", timeout=60).json()
        if batch["status"] in FINISHED:
            return batch
        time.sleep(poll_s)


def batch_seconds(server: Server, model: str, lines: int, idle_s: float) -> float:
    """Seconds from ``batches.create`` to ``completed`` (the input file is uploaded first)."""
    file_id = upload(server, model, lines)
    time.sleep(idle_s)  # the server is idle again: the batch no longer gives way to online calls
    started = time.perf_counter()
    batch = wait(server, create(server, file_id))
    took = time.perf_counter() - started
    assert batch["status"] == "completed", batch
    assert batch["request_counts"]["completed"] == lines, batch["request_counts"]
    return took


def measure(spec: dict, in_flight: int, args, tmp: Path) -> dict:
    env = {
        "AIMASS_BATCH_MAX_IN_FLIGHT": str(in_flight),
        "AIMASS_BATCH_YIELD_S": str(YIELD_S),
        "AIMASS_JOBS_POLL_INTERVAL_S": "0.05",
    }
    model = spec["name"]
    with run_server(tmp / f"f{in_flight}", [spec], env=env) as server:
        run_async(_online(server, model, 200, args.clients))  # warm up
        online, batched = [], []
        for _ in range(args.rounds):
            online.append(run_async(_online(server, model, args.lines, args.clients)))
            batched.append(batch_seconds(server, model, args.lines, YIELD_S + 0.5))
        idle = run_async(_steady(server, model, args.duration, args.interval_ms / 1000))
        big = submit(server, model, args.big_lines)
        while httpx.get(f"{server}/v1/batches/{big}").json()["status"] != "in_progress":
            time.sleep(0.05)
        busy = run_async(_steady(server, model, args.duration, args.interval_ms / 1000))
        progress = httpx.get(f"{server}/v1/batches/{big}").json()["request_counts"]
        httpx.post(f"{server}/v1/batches/{big}/cancel")
        wait(server, big)
    ratios = sorted(o / b for o, b in zip(online, batched, strict=True))
    return {
        "online_per_s": args.lines / min(online),
        "batch_per_s": args.lines / min(batched),
        "median_round_ratio": ratios[len(ratios) // 2],
        "idle": pcts(idle),
        "busy": pcts(busy),
        "busy_batch_lines": progress["completed"],
    }


def report(results: dict[int, dict], args) -> str:
    rows_t, rows_l = [], []
    for in_flight, r in results.items():
        rows_t.append(
            [
                in_flight,
                r["online_per_s"],
                r["batch_per_s"],
                f"{r['batch_per_s'] / r['online_per_s']:.2f}×",
                f"{r['median_round_ratio']:.2f}×",
            ]
        )
        (i50, _, i99), (b50, _, b99) = r["idle"], r["busy"]
        rows_l.append(
            [
                in_flight,
                i50 * 1000,
                i99 * 1000,
                b50 * 1000,
                b99 * 1000,
                f"{b99 / i99:.2f}×",
                r["busy_batch_lines"] / args.duration,
            ]
        )
    flags = [
        "--lines",
        "--clients",
        "--rounds",
        "--duration",
        "--interval-ms",
        "--big-lines",
        "--in-flight",
    ]
    return "\n".join(
        [
            f"## Batches: a {args.lines}-line embeddings batch vs. online, and online latency "
            f"while a batch runs ({stamp()})",
            "",
            f"Command: `flock /tmp/bench.lock env PYTHONPATH=$PWD "
            f"{command('bench_batches.py', args, flags)}`. {machine_note()}.",
            "",
            f"Throughput (best of {args.rounds} interleaved rounds, and the median of the "
            f"rounds' own ratios; online = {args.clients} keep-alive clients; batch = create → "
            f"completed, after {YIELD_S + 0.5:g} s idle). Goal: batch ≥ 0.8× online.",
            "",
            *table(
                [
                    "batch_max_in_flight",
                    "online req/s",
                    "batch lines/s",
                    "best / best",
                    "median round",
                ],
                rows_t,
            ),
            "",
            f"Online latency, one request every {args.interval_ms:g} ms for {args.duration:g} s, "
            "idle vs. while a batch runs. Goal: p99 with the batch ≤ 1.5× idle.",
            "",
            *table(
                [
                    "batch_max_in_flight",
                    "idle p50 ms",
                    "idle p99 ms",
                    "batch p50 ms",
                    "batch p99 ms",
                    "p99 ratio",
                    "batch lines/s meanwhile",
                ],
                rows_l,
            ),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--interval-ms", type=float, default=100.0)
    parser.add_argument("--big-lines", type=int, default=50_000)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()

    from aimass.config import Settings
    from aimass.provision.builtin import minilm_specs

    spec = minilm_specs(Settings().home)[-1].model_dump(mode="json")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for in_flight in args.in_flight:
            print(f"batch_max_in_flight={in_flight} ...", flush=True)
            results[in_flight] = measure(spec, in_flight, args, Path(tmp))
            print(json.dumps(results[in_flight]), flush=True)
    text = report(results, args)
    print(text)
    if not args.no_append:
        append_section(text)


if __name__ == "__main__":
    os.environ.setdefault("AIMASS_AUTH_FAILURE_DELAY_S", "0")
    main()
