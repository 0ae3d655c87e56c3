"""The Ray backend against the local one: added latency and throughput with 1 vs 2 replicas.

Two servers run side by side, serving the same specs: one with local worker processes (the
default), one with ``--cluster`` on a two-node ``ray.cluster_utils.Cluster`` started by this
script (a head and a worker node on this machine, 2 logical CPUs each; every replica reserves
0.5, so SPREAD puts a 2-replica model on both nodes). Measured, interleaved round by round:

- latency at concurrency 1, tiny ONNX model (``make_add_model``, 1 replica): p50/p90/p99 at the
  client; the difference of the p50s is what the Ray path adds (actor call + object transfer);
- throughput (requests/s) at concurrency 8 of a compute-bound model (``make_slow_model``:
  every request is four 256x512x512 MatMuls, batching off) with 1 replica and with 2
  replicas, on each backend: the 2-replica/1-replica ratio is the scaling. On a 2-core
  machine two replicas can use at most both cores, which the server, its clients and Ray's
  own processes share.

    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_cluster.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

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
    stamp,
    table,
)

from tests.conftest import make_add_model, make_slow_model, onnx_spec

BACKENDS = ("local", "ray")
HALF_A_CPU = {"num_cpus": 0.5}


def specs(tmp: Path) -> list[dict]:
    add, slow = make_add_model(tmp / "add.onnx"), make_slow_model(tmp / "slow.onnx")
    one_by_one = {"max_batch_size": 1}  # each request is one computation: replicas scale it
    return [
        onnx_spec("add", add, resources=HALF_A_CPU),
        onnx_spec("slow1", slow, resources=HALF_A_CPU, batching=one_by_one),
        onnx_spec("slow2", slow, replicas=2, resources=HALF_A_CPU, batching=one_by_one),
    ]


async def latencies(server, count: int) -> list[float]:
    a = np.array([[1, 2, 3, 4]], np.float32)
    body, headers = json_body({"a": a, "b": a})
    request = raw_request(server, "/v2/models/add/infer", body, headers)
    client = await RawClient(server.port).connect()
    out = []
    for _ in range(count):
        start = time.perf_counter()
        status, _ = await client.send(request)
        if status != 200:
            raise RuntimeError(f"HTTP {status}")
        out.append((time.perf_counter() - start) * 1e3)
    client.close()
    return out


async def throughput(server, model: str, clients: int, seconds: float) -> float:
    body, headers = json_body({"x": np.array([[1.0]], np.float32)})
    request = raw_request(server, f"/v2/models/{model}/infer", body, headers)
    done = 0
    end = time.monotonic() + seconds

    async def one() -> None:
        nonlocal done
        client = await RawClient(server.port).connect()
        while time.monotonic() < end:
            status, _ = await client.send(request)
            if status != 200:
                raise RuntimeError(f"HTTP {status}")
            done += 1
        client.close()

    started = time.monotonic()
    await asyncio.gather(*(one() for _ in range(clients)))
    return done / (time.monotonic() - started)


async def measure(servers: dict, args) -> tuple[dict, dict]:
    lat: dict[str, list[float]] = {b: [] for b in BACKENDS}
    rps: dict[tuple[str, str], list[float]] = {}
    for backend in BACKENDS:  # warm both paths (first batches, first actor calls)
        await latencies(servers[backend], 200)
    for i in range(args.rounds):
        order = BACKENDS if i % 2 == 0 else BACKENDS[::-1]
        for backend in order:
            lat[backend] += await latencies(servers[backend], args.requests)
            for model in ("slow1", "slow2"):
                rate = await throughput(servers[backend], model, args.clients, args.seconds)
                rps.setdefault((backend, model), []).append(rate)
    return lat, rps


def report(lat: dict, rps: dict, args) -> str:
    rows = [[f"{b} backend", *pcts(lat[b])] for b in BACKENDS]
    added = pcts(lat["ray"])[0] - pcts(lat["local"])[0]
    best = {k: max(v) for k, v in rps.items()}
    trows = [
        [
            f"{b} backend",
            best[(b, "slow1")],
            best[(b, "slow2")],
            f"{best[(b, 'slow2')] / best[(b, 'slow1')]:.2f}x",
        ]
        for b in BACKENDS
    ]
    flags = ["--rounds", "--requests", "--clients", "--seconds"]
    return "\n".join(
        [
            f"## Ray cluster backend vs local processes ({stamp()})",
            "",
            f"`flock /tmp/bench.lock {command('bench_cluster.py', args, flags)}` — "
            f"{machine_note()}.",
            "Two servers side by side with the same specs: local worker processes, and "
            "`--cluster` on a two-node `ray.cluster_utils.Cluster` on this machine (2 logical "
            "CPUs per node, 0.5 reserved per replica, SPREAD). Rounds alternate the backends.",
            "",
            f"Latency at concurrency 1, tiny ONNX model (1×4 FP32 add), 1 replica, "
            f"{args.rounds} × {args.requests} requests per backend, ms at the client:",
            "",
            *table(["path", "p50", "p90", "p99"], rows),
            "",
            f"Added by the Ray path at p50: **{added:+.3f} ms**.",
            "",
            f"Throughput, compute-bound model (four 256×512×512 MatMuls per request, "
            "max_batch_size 1), "
            f"{args.clients} clients, best of {args.rounds} × {args.seconds:g} s, requests/s:",
            "",
            *table(["backend", "1 replica", "2 replicas", "scaling"], trows),
            "",
            "All rounds (requests/s): "
            + "; ".join(
                f"{b} {m}: " + ", ".join(f"{r:.0f}" for r in v) for (b, m), v in rps.items()
            )
            + ".",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--requests", type=int, default=500, help="Latency requests per round.")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=5.0, help="Per throughput phase.")
    parser.add_argument("--no-append", action="store_true", help="Print only.")
    args = parser.parse_args()
    from ray.cluster_utils import Cluster

    nodes = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    nodes.add_node(num_cpus=2)
    nodes.wait_for_nodes()
    try:
        with tempfile.TemporaryDirectory() as tmp_name, ExitStack() as stack:
            tmp = Path(tmp_name)
            models = specs(tmp)
            servers = {
                "local": stack.enter_context(serve(tmp / "local", models)),
                "ray": stack.enter_context(
                    serve(tmp / "ray", models, ["--cluster", nodes.address])
                ),
            }
            lat, rps = run_async(measure(servers, args))
    finally:
        nodes.shutdown()
    text = report(lat, rps, args)
    print(text)
    if not args.no_append:
        append_section(text)


if __name__ == "__main__":
    main()
