"""Recommendation throughput: AI Mass's /v1/recommendations vs. ``implicit`` in process, in one
run.

A recommender (ALS, 64 factors) is trained in process on generated shop data
(``examples/data/make_recommend.py``), then:

* ``in-process``  ``AlternatingLeastSquares.recommend(user, user_items[user], N=10)`` in a loop
  (one user a call, as a service answers; implicit's own BLAS scoring and top-k);
* ``aimass``      the same artifact served (runtime ``recommend``, one replica), ``--clients``
  clients each posting ``{model, user, n: 10}`` in a closed loop over HTTP (``common.closed_loop``:
  keep-alive sockets, pre-encoded requests, little client CPU taken from the server).

Recommendations/s and p50/p99 latency, and the CPU each process spent per served request (the
breakdown of what the served path costs beside the library's call); the table and the command
are appended to benchmarks/RESULTS.md. ``--profile DIR`` also records py-spy stacks of the
gateway and the replica during the served run.

    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_recommend.py --duration 20
"""

from __future__ import annotations

import argparse
import itertools
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from common import (
    append_section,
    closed_loop,
    command,
    cpu_seconds,
    machine_note,
    pcts,
    run_async,
    serve,
    server_stats,
    stamp,
    table,
    worker_pids,
)

from aimass.scenarios.recommend.data import read_interactions, read_items
from aimass.scenarios.recommend.model import hyperparameters, train
from examples.data.make_recommend import generate

MODEL = "bench-shop"


def in_process(model, users: list[int], duration: float) -> tuple[float, list[float]]:
    """Recommendations/s and per-call latencies of implicit's recommend, one user a call."""
    als, seen = model._model, model.seen
    latencies, start = [], time.perf_counter()
    while time.perf_counter() - start < duration:
        u = random.choice(users)
        t = time.perf_counter()
        als.recommend(u, seen[u], N=10)
        latencies.append(time.perf_counter() - t)
    return len(latencies) / (time.perf_counter() - start), latencies


def served(server, users: list[str], clients: int, duration: float) -> tuple[float, list[float]]:
    """``clients`` clients each asking for a random user's top 10 for ``duration`` seconds."""
    bodies = (orjson.dumps({"model": MODEL, "user": random.choice(users), "n": 10})
              for _ in itertools.count())  # fmt: skip
    return run_async(closed_loop(server, "/v1/recommendations", bodies, clients, duration))


@contextmanager
def profiled(folder: Path | None, pids: dict[str, int], seconds: float) -> Iterator[None]:
    """py-spy records each process of ``pids`` for ``seconds`` (collapsed stacks, one file a
    process in ``folder``); nothing when ``folder`` is None."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    beside = Path(sys.executable).with_name("py-spy")  # the venv's, when it is not on PATH
    spy = [str(beside) if beside.exists() else "py-spy", "record", "--duration",
           str(int(seconds)), "--format", "raw", "--rate", "200", "--nonblocking"]  # fmt: skip
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    spies = [
        subprocess.Popen(
            [*spy, "--pid", str(pid), "--output", str(folder / f"{name}.txt")], **quiet
        )
        for name, pid in pids.items()
    ]
    try:
        yield
    finally:
        for spy in spies:
            spy.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--profile", type=Path, default=None,
                        help="folder for py-spy stacks of the gateway and the replica")  # fmt: skip
    args = parser.parse_args()
    random.seed(0)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        generate(args.users, args.items, 20, 60, 7, tmp / "data")
        data = read_interactions(tmp / "data" / "interactions.csv")
        model = train(data, hyperparameters({}), read_items(tmp / "data" / "items.csv"))
        model.save(tmp / "model")
        rate_lib, lat_lib = in_process(model, list(range(len(model.user_ids))), args.duration)
        spec = {"name": MODEL, "runtime": "recommend", "source": str(tmp / "model")}
        with serve(tmp, [spec]) as server:
            served(server, model.user_ids, args.clients, 2)  # warm up
            pids = {"gateway": server.proc.pid, "replica": worker_pids(server)[0]}
            before = {name: cpu_seconds([pid]) for name, pid in pids.items()}
            before["client"] = time.process_time()
            with profiled(args.profile, pids, args.duration):
                rate_srv, lat_srv = served(server, model.user_ids, args.clients, args.duration)
            after = {name: cpu_seconds([pid]) for name, pid in pids.items()}
            after["client"] = time.process_time()
            cpu_ms = {k: (after[k] - before[k]) / len(lat_srv) * 1000 for k in after}
            batch = server_stats(server, MODEL)["rows_per_batch"]
    rows = []
    for name, rate, lat in (("in-process implicit", rate_lib, lat_lib),
                            ("aimass /v1/recommendations", rate_srv, lat_srv)):  # fmt: skip
        p50, _, p99 = pcts(lat)
        rows.append([name, rate, p50 * 1000, p99 * 1000])
    flags = ["--users", "--items", "--clients", "--duration"]
    text = [
        f"## Recommendations: served vs implicit in process ({stamp()})",
        "",
        f"`flock /tmp/bench.lock {command('bench_recommend.py', args, flags)}` — "
        f"{args.users} users, {args.items} items, ALS 64 factors, n=10; {args.clients} HTTP "
        f"clients; {machine_note()}.",
        "",
        *table(["system", "recommendations/s", "p50 ms", "p99 ms"], rows),
        "",
        f"Served/in-process throughput ratio: {rate_srv / rate_lib:.3f}. CPU per served "
        f"request: gateway {cpu_ms['gateway']:.2f} ms, replica {cpu_ms['replica']:.2f} ms "
        f"(`/proc/<pid>/stat`), load generator {cpu_ms['client']:.2f} ms (on the same 2 "
        f"cores); {batch:.1f} requests per replica call on average (warm-up included); "
        f"in process, one call: {1000 / rate_lib:.2f} ms.",
    ]
    print("\n".join(text))
    append_section("\n".join(text))


if __name__ == "__main__":
    main()
