"""Recommendation throughput: AI Mass's /v1/recommendations vs. ``implicit`` in process, in one
run.

A recommender (ALS, 64 factors) is trained in process on generated shop data
(``examples/data/make_recommend.py``), then:

* ``in-process``  ``AlternatingLeastSquares.recommend(user, user_items[user], N=10)`` in a loop
  (one user a call, as a service answers; implicit's own BLAS scoring and top-k);
* ``aimass``      the same artifact served (runtime ``recommend``, one replica), ``--clients``
  clients each posting ``{model, user, n: 10}`` in a closed loop over HTTP.

Recommendations/s and p50/p99 latency; the table and the command are appended to
benchmarks/RESULTS.md.

    flock /tmp/bench.lock .venv/bin/python benchmarks/bench_recommend.py --duration 20
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from pathlib import Path

import httpx
from common import append_section, command, machine_note, pcts, serve, stamp, table

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


async def served(base: str, users: list[str], clients: int, duration: float):
    latencies: list[float] = []
    end = time.perf_counter() + duration

    async def client(http: httpx.AsyncClient) -> None:
        while time.perf_counter() < end:
            body = {"model": MODEL, "user": random.choice(users), "n": 10}
            t = time.perf_counter()
            answer = await http.post(f"{base}/v1/recommendations", json=body)
            assert answer.status_code == 200, answer.text
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))
    return len(latencies) / (time.perf_counter() - start), latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--duration", type=float, default=20)
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
            asyncio.run(served(str(server), model.user_ids, args.clients, 2))  # warm up
            rate_srv, lat_srv = asyncio.run(
                served(str(server), model.user_ids, args.clients, args.duration)
            )
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
        f"Served/in-process throughput ratio: {rate_srv / rate_lib:.3f}.",
    ]
    print("\n".join(text))
    append_section("\n".join(text))


if __name__ == "__main__":
    main()
