"""Throughput gained by dynamic batching on a compute-bound ONNX model, 32 concurrent clients.

One server loads the same MLP (``make_mlp_model``: 1×2048 FP32 in, 2 MatMul+Relu layers of
2048×2048) three times, differing only in batching:

- ``off``: max_batch_size 1 — the baseline;
- ``on``: max_batch_size 32, max_delay_ms 0 (batches form while the replica is busy);
- ``on+2ms``: max_batch_size 32, max_delay_ms 2.

Each model has 1 replica with ``--threads`` intra-op threads (default 1: the machine has
2 cores, and the server's event loop and this load generator need the other one). 32
closed-loop clients (asyncio, one keep-alive connection each, pre-encoded requests) send
1-row requests. Requests are sent either as v2 JSON (2048 floats as text, answers as
JSON) or with the binary tensor extension (inputs and outputs as raw bytes). The script
cycles through every (setup, encoding) pair for ``--phase`` seconds at a time, in rotating
order, until ``--duration`` is spent, so machine noise hits all pairs alike.
The claim: rows/s(on) / rows/s(off) >= 3.

    .venv/bin/python benchmarks/bench_batching.py [--duration 90] [--phase 3] [--clients 32]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import numpy as np
from common import (
    RawClient,
    append_section,
    binary_body,
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

from tests.conftest import make_mlp_model, onnx_spec

SETUPS = {
    "off": {"max_batch_size": 1, "max_delay_ms": 0},
    "on": {"max_batch_size": 32, "max_delay_ms": 0},
    "on+2ms": {"max_batch_size": 32, "max_delay_ms": 2},
}
MODEL = {"off": "mlp_off", "on": "mlp_on", "on+2ms": "mlp_on2"}
ENCODINGS = ("binary", "json")


class Tally:
    """Completed rows, time spent and latencies of one (setup, encoding) pair."""

    def __init__(self) -> None:
        self.rows = 0
        self.seconds = 0.0
        self.errors = 0
        self.latencies: list[float] = []

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


async def phase(clients: list[RawClient], request: bytes, seconds: float, tally: Tally) -> None:
    """All clients send ``request`` back to back for ``seconds`` (closed loop)."""
    end = time.monotonic() + seconds

    async def loop(client: RawClient) -> None:
        while time.monotonic() < end:
            start = time.perf_counter()
            status, _ = await client.send(request)
            if status == 200:
                tally.rows += 1
                tally.latencies.append((time.perf_counter() - start) * 1e3)
            else:
                tally.errors += 1

    started = time.monotonic()
    await asyncio.gather(*(loop(c) for c in clients))
    tally.seconds += time.monotonic() - started


def requests(server) -> dict[tuple[str, str], bytes]:
    x = np.random.default_rng(1).standard_normal((1, 2048)).astype(np.float32)
    out = {}
    for encoding in ENCODINGS:
        body, headers = (binary_body if encoding == "binary" else json_body)({"x": x})
        for setup, model in MODEL.items():
            path = f"/v2/models/{model}/infer"
            out[(setup, encoding)] = raw_request(server, path, body, headers)
    return out


async def measure(server, args) -> dict[tuple[str, str], Tally]:
    reqs = requests(server)
    pairs = list(reqs)
    clients = [await RawClient(server.port).connect() for _ in range(args.clients)]
    for pair in pairs:  # warm-up: sessions, allocators, connections
        await phase(clients, reqs[pair], 1.0, Tally())
    tallies = {pair: Tally() for pair in pairs}
    rounds = max(1, round(args.duration / (args.phase * len(pairs))))
    for r in range(rounds):
        for k in range(len(pairs)):
            pair = pairs[(r + k) % len(pairs)]
            await phase(clients, reqs[pair], args.phase, tallies[pair])
    for c in clients:
        c.close()
    return tallies


def report(tallies: dict[tuple[str, str], Tally], stats: dict[str, dict], args) -> str:
    rows = []
    for (setup, encoding), t in tallies.items():
        base = tallies[("off", encoding)].rate
        p50, _, p99 = pcts(t.latencies)
        rows.append(
            [
                setup,
                encoding,
                f"{t.rate:.0f}",
                f"{t.rate / base:.2f}×" if base else "-",
                p50,
                p99,
                f"{stats[MODEL[setup]].get('rows_per_batch', 0):.1f}",
                t.errors,
            ]
        )
    ratios = {
        enc: tallies[("on", enc)].rate / tallies[("off", enc)].rate
        for enc in ENCODINGS
        if tallies[("off", enc)].rate
    }
    verdicts = ", ".join(
        f"{enc} {r:.2f}× ({'meets' if r >= 3 else 'MISSES'} the ≥ 3× goal)"
        for enc, r in ratios.items()
    )
    cmd = command("bench_batching.py", args, ["--duration", "--phase", "--clients", "--threads"])
    lines = [
        f"## Dynamic batching throughput, MLP 2048, {args.clients} clients ({stamp()})",
        "",
        f"`{cmd}` — {machine_note()}.",
        f"One server, the same `make_mlp_model(width=2048)` loaded as three models that differ "
        f"only in batching; 1 replica each, {args.threads} intra-op thread(s); {args.clients} "
        "closed-loop clients with 1-row requests over keep-alive connections; every "
        f"(setup, encoding) pair measured in {args.phase:g} s phases, in rotating order. "
        "Latency in ms at the client; rows/batch is the server's mean over the whole run "
        "(warm-up included).",
        "",
        *table(
            ["batching", "encoding", "rows/s", "vs off", "p50", "p99", "rows/batch", "errors"],
            rows,
        ),
        "",
        f"Batching on (max_delay_ms 0) vs off: {verdicts}.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=90, help="Seconds of measurement.")
    parser.add_argument("--phase", type=float, default=3, help="Seconds per phase.")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="Intra-op threads per replica.")
    parser.add_argument("--no-append", action="store_true", help="Print only.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        path = make_mlp_model(tmp / "mlp.onnx", width=2048)
        specs = [
            onnx_spec(MODEL[s], path, batching=b, threads=args.threads) for s, b in SETUPS.items()
        ]
        with serve(tmp, specs) as server:
            tallies = run_async(measure(server, args))
            stats = {m: server_stats(server, m) for m in MODEL.values()}
    text = report(tallies, stats, args)
    print(text)
    if not args.no_append:
        append_section(text)


if __name__ == "__main__":
    main()
