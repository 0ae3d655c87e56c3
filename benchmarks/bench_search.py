"""Vector store search at 100,000 chunks of 384-d: recall, HTTP latency and QPS, in one run.

The store is filled through the store internals (``search.records``: one completed file
holding every chunk), so this measures the index, not ingestion. Vectors are clustered
Gaussian points (``--clusters`` centres, unit-normalized), a stand-in for sentence embeddings,
which are not uniform on the sphere. The server opens the store on its first search and builds
the HNSW index from the database's vectors (timed: "rebuild").

- recall@10 of the server's answers against exact (brute-force cosine) search;
- search p50/p99 and QPS over HTTP at ``--clients`` concurrent clients, ``search_mode: vector``
  with ``query_vector`` (the extension that skips the query's embedding);
- the same usearch index (same parameters, same vectors) called in-process, from the same
  number of threads, as the baseline; ratio = HTTP QPS / in-process QPS.

    flock /tmp/bench.lock env PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_search.py
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import orjson
from common import RawClient, append_section, command, machine_note, pcts, raw_request, stamp

from aimass.search import index as index_params
from aimass.search import records
from tests.conftest import run_server
from tests.factories_text import tiny_encoder

LATENT = 32
"""Intrinsic dimension of the synthetic embeddings (sentence embeddings have far fewer
degrees of freedom than their 384 coordinates; isotropic 384-d noise has none of that
structure and is not what an index of text chunks holds)."""


def vectors(n: int, dims: int, clusters: int, seed: int = 0) -> np.ndarray:
    """Clustered points in a ``LATENT``-d space, mapped into ``dims`` by a fixed random
    projection, with a little full-width noise; unit length."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, LATENT))
    latent = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, LATENT))
    projection = np.random.default_rng(12345).standard_normal((LATENT, dims))
    points = latent @ projection + 0.5 * rng.standard_normal((n, dims))
    points = points.astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def fill(home: Path, data: np.ndarray) -> str:
    """A store of one completed file with every vector as a chunk, written to the registry."""
    url = f"sqlite:///{home / 'aimass.db'}"
    store = records.create_store(
        url,
        owner_key_id=None,
        name="bench",
        embedding_model="tiny",
        metadata={},
        expires_after_days=None,
    )
    records.add_file(
        url, store.id, "file-bench", attributes={}, max_chunk_tokens=100, chunk_overlap_tokens=0
    )
    chunks = [records.NewChunk(i, f"chunk {i}", 2, v) for i, v in enumerate(data)]
    records.complete_file(url, store.id, "file-bench", chunks, 0)
    records.update_store(url, store.id, dimensions=data.shape[1])
    return store.id


def exact_top(data: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ data.T), axis=1)[:, :k]


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    hits = sum(len(set(f) & set(t)) for f, t in zip(found, truth.tolist(), strict=True))
    return hits / truth.size


async def http_load(server, store_id: str, queries: np.ndarray, clients: int, seconds: float):
    path = f"/v1/vector_stores/{store_id}/search"
    bodies = [
        raw_request(
            server,
            path,
            orjson.dumps(
                {
                    "query": "q",
                    "search_mode": "vector",
                    "max_num_results": 10,
                    "query_vector": q.tolist(),
                }
            ),
            {"content-type": "application/json"},
        )
        for q in queries
    ]
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def one(offset: int) -> None:
        client = await RawClient(server.port).connect()
        i = offset
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            status, _ = await client.send(bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - t0)
            assert status == 200, status
            i += clients
        client.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(one(c) for c in range(clients)))
    return latencies, time.perf_counter() - t0


def http_answers(base: str, store_id: str, queries: np.ndarray) -> list[list[int]]:
    import httpx

    found = []
    with httpx.Client(base_url=base, timeout=900) as client:  # the first one opens the store
        for q in queries:
            r = client.post(
                f"/v1/vector_stores/{store_id}/search",
                json={
                    "query": "q",
                    "search_mode": "vector",
                    "max_num_results": 10,
                    "query_vector": q.tolist(),
                },
            )
            r.raise_for_status()
            found.append([int(d["content"][0]["text"].split()[1]) for d in r.json()["data"]])
    return found


def inprocess_qps(data: np.ndarray, queries: np.ndarray, threads: int, seconds: float) -> float:
    from usearch.index import Index

    index = Index(
        ndim=data.shape[1],
        metric="cos",
        dtype="f32",
        connectivity=index_params.CONNECTIVITY,
        expansion_add=index_params.EXPANSION_ADD,
        expansion_search=index_params.EXPANSION_SEARCH,
    )
    index.add(np.arange(len(data), dtype=np.uint64), data)
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def run(t: int) -> None:
        i = t
        while time.perf_counter() < stop:
            index.search(queries[i % len(queries)], 10)
            counts[t] += 1
            i += threads

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    t0 = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - t0)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    data = vectors(args.chunks, args.dims, args.clusters, seed=0)
    rng = np.random.default_rng(1)
    picks = data[rng.integers(0, len(data), args.queries)]
    queries = picks + 0.3 * rng.standard_normal(picks.shape).astype(np.float32)
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    truth = exact_top(data, queries, 10)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "home").mkdir()
        t0 = time.perf_counter()
        store_id = fill(tmp / "home", data)
        fill_s = time.perf_counter() - t0
        model = {
            "name": "tiny",
            "task": "embedding",
            "runtime": "transformers",
            "source": str(tiny_encoder(tmp / "encoder", max_length=64)),
        }
        with run_server(tmp, [model]) as server:
            t0 = time.perf_counter()
            first = http_answers(str(server), store_id, queries[:1])
            rebuild_s = time.perf_counter() - t0
            found = first + http_answers(str(server), store_id, queries[1:])
            http_recall = recall(found, truth)
            lat, elapsed = asyncio.run(http_load(server, store_id, queries, args.clients, 3))
            lat, elapsed = asyncio.run(
                http_load(server, store_id, queries, args.clients, args.seconds)
            )
        http_qps = len(lat) / elapsed
        p50, p90, p99 = pcts(lat)
    local_qps = inprocess_qps(data, queries, args.clients, args.seconds)
    flags = ["--chunks", "--dims", "--clusters", "--queries", "--clients", "--seconds"]
    title = f"vector store index at {args.chunks:,} chunks of {args.dims}-d"
    recall_row = f"recall@10 vs exact search ({args.queries} queries, server's answers)"
    text = f"""## bench_search.py: {title} ({stamp()})

`flock /tmp/bench.lock env PYTHONPATH=$PWD {command("bench_search.py", args, flags)}`

Clustered unit vectors ({args.clusters} centres, intrinsic dimension {LATENT}), filled
through the store internals in
{fill_s:.1f} s; the server built its HNSW index from the database on the first search in
{rebuild_s:.1f} s (connectivity {index_params.CONNECTIVITY}, expansion_add
{index_params.EXPANSION_ADD}, expansion_search {index_params.EXPANSION_SEARCH}).

| measure | value |
|---|---|
| {recall_row} | {http_recall:.3f} |
| HTTP search p50 / p90 / p99 at {args.clients} clients | {ms(p50)} / {ms(p90)} / {ms(p99)} ms |
| HTTP search QPS at {args.clients} clients | {http_qps:.0f} |
| usearch in-process QPS, {args.clients} threads, same parameters | {local_qps:.0f} |
| ratio HTTP / in-process | {http_qps / local_qps:.2f}x |

{machine_note()}
"""
    print(text)
    append_section(text)


if __name__ == "__main__":
    main()
