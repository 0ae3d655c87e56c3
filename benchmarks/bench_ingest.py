"""Vector store ingestion throughput against the embedding model's own, and search latency
while ingestion runs, in one run on one server (the built-in all-MiniLM-L6-v2).

1. **Ingestion**: ``--files`` documents (docstrings of numpy, scipy and the standard library,
   concatenated to about ``--chunks-per-file`` chunks each) are added to a new store in one
   file batch, nothing else running; chunks/s = chunks committed / seconds until every file
   is ``completed``.
2. **The model's own throughput**: the very chunk texts (read back through ``/content``) sent
   to ``/v1/embeddings`` of the same server (same replicas and threads) by 8 clients in
   requests of 16, the model kept busy: chunks/s. Steps 1 and 2 alternate for ``--rounds``
   rounds (a new store each time), best of each. Ratio = ingestion / model (goal ≥ 0.8×).
3. **Search while ingesting**: another store is searched by ``--search-clients`` clients in a
   loop (``search_mode: hybrid``, a real query embedding each time), first alone (idle p99),
   then while the same files are ingested into a third store: p99 during / idle (goal ≤ 2×).

``--replicas``, ``--threads`` and ``--online-replicas`` set the embedding model's replicas,
threads per replica and ``batching.online_replicas`` (replicas kept free of background
batches while searches come; docs/vector_stores.md); ``--ingest-concurrency`` the files
ingested at once (``AIMASS_VECTOR_STORE_INGEST_CONCURRENCY``): several values are measured in
turn, each on a fresh server, one row each.

    flock /tmp/bench.lock env PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_ingest.py
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from bench_search_quality import corpus
from common import append_section, command, machine_note, pcts, stamp, table

from aimass.config import Settings
from aimass.provision.builtin import MINILM, minilm_specs
from tests.conftest import run_server

QUERIES = [
    "how to invert a matrix",
    "read a zip archive",
    "parse a date string",
    "random numbers from a normal distribution",
    "join paths on the file system",
]


def documents(n_files: int, chunks_per_file: int) -> list[str]:
    """``n_files`` texts of docstrings, each about ``chunks_per_file`` chunks of 254 tokens."""
    docs = [d for _, d in corpus(100_000, seed=0)]
    words_per_file = chunks_per_file * 190  # ~254 tokens of these texts, with overlap
    files, current, i = [], [], 0
    while len(files) < n_files:
        current.append(docs[i % len(docs)])
        i += 1
        if sum(len(d.split()) for d in current) >= words_per_file:
            files.append("\n\n".join(current))
            current = []
    return files


class Searcher:
    """Clients searching a store in a loop from a thread; latencies kept per phase."""

    def __init__(self, base: str, store: str, clients: int):
        self.base, self.store, self.clients = base, store, clients
        self.phase = "warmup"
        self.latencies: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> Searcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.base, timeout=60) as c:
            await asyncio.gather(*(self._client(c, i) for i in range(self.clients)))

    async def _client(self, c: httpx.AsyncClient, i: int) -> None:
        n = i
        while not self._stop.is_set():
            body = {"query": QUERIES[n % len(QUERIES)], "max_num_results": 5}
            started = time.perf_counter()
            answer = await c.post(f"/v1/vector_stores/{self.store}/search", json=body)
            answer.raise_for_status()
            self.latencies.setdefault(self.phase, []).append(time.perf_counter() - started)
            n += 1
            await asyncio.sleep(0.05)


def wait_completed(c: httpx.Client, store: str, timeout_s: float = 3600) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        counts = c.get(f"/v1/vector_stores/{store}").json()["file_counts"]
        if counts["in_progress"] == 0:
            if counts["failed"]:
                raise RuntimeError(f"{counts['failed']} files failed")
            return
        time.sleep(0.05)
    raise TimeoutError(store)


def ingest(c: httpx.Client, name: str, ids: list[str]) -> tuple[float, str]:
    """Seconds to ingest ``ids`` into a new store in one file batch, and the store's id."""
    store = c.post("/v1/vector_stores", json={"name": name}).json()["id"]
    started = time.perf_counter()
    c.post(f"/v1/vector_stores/{store}/file_batches", json={"file_ids": ids})
    wait_completed(c, store)
    return time.perf_counter() - started, store


def upload(c: httpx.Client, name: str, text: str) -> str:
    files = {"file": (name, text.encode(), "text/plain")}
    return c.post("/v1/files", data={"purpose": "assistants"}, files=files).json()["id"]


def model_throughput(base: str, texts: list[str], clients: int = 8, batch: int = 16) -> float:
    """Chunks/s of ``texts`` through /v1/embeddings, ``clients`` requests of ``batch`` in flight."""
    blocks = [texts[i : i + batch] for i in range(0, len(texts), batch)]

    async def run() -> float:
        queue = list(reversed(blocks))
        async with httpx.AsyncClient(base_url=base, timeout=120) as c:

            async def client() -> None:
                while queue:
                    block = queue.pop()
                    body = {"model": MINILM, "input": block}
                    (await c.post("/v1/embeddings", json=body)).raise_for_status()

            started = time.perf_counter()
            await asyncio.gather(*(client() for _ in range(clients)))
            return len(texts) / (time.perf_counter() - started)

    return asyncio.run(run())


@dataclass
class Run:
    """One server's figures, at one ingest concurrency."""

    concurrency: int
    chunks: int
    ingest_rate: float
    model_rate: float
    busy_rate: float
    idle: tuple[float, float, float]
    busy: tuple[float, float, float]


def measure(args: argparse.Namespace, texts: list[str], concurrency: int) -> Run:
    """Steps 1-3 on a fresh server ingesting ``concurrency`` files at once."""
    env = {"AIMASS_VECTOR_STORE_INGEST_CONCURRENCY": str(concurrency)}
    specs = [
        s.model_copy(
            update={
                "replicas": args.replicas,
                "threads": args.threads or s.threads,
                "batching": s.batching.model_copy(update={"online_replicas": args.online_replicas}),
            }
        )
        for s in minilm_specs(Settings().home)
    ]
    with tempfile.TemporaryDirectory() as tmp, run_server(Path(tmp), specs, env=env) as base:
        c = httpx.Client(base_url=str(base), timeout=120)
        ids = [upload(c, f"doc{i}.txt", t) for i, t in enumerate(texts)]
        ingest_rate = model_rate = 0.0
        for round_ in range(args.rounds):  # interleaved: the load of others drifts
            took, store = ingest(c, f"alone {round_}", ids)
            chunks = []
            for file_id in ids:
                got = c.get(f"/v1/vector_stores/{store}/files/{file_id}/content").json()
                chunks += [part["text"] for part in got["data"]]
            ingest_rate = max(ingest_rate, len(chunks) / took)
            model_rate = max(model_rate, model_throughput(str(base), chunks))
            print(
                f"[{concurrency}] best so far: ingestion {ingest_rate:.1f}, model {model_rate:.1f}"
            )
        searched = ingest(c, "searched", ids[:5])[1]
        searcher = Searcher(str(base), searched, args.search_clients).start()
        time.sleep(3)
        searcher.phase = "idle"
        time.sleep(args.phase_s)
        searcher.phase = "ingesting"
        busy_took, _ = ingest(c, "while searched", ids)
        searcher.stop()
        print(f"[{concurrency}] ingested again while searched in {busy_took:.1f} s")
    return Run(
        concurrency,
        len(chunks),
        ingest_rate,
        model_rate,
        len(chunks) / busy_took,
        pcts(searcher.latencies["idle"]),
        pcts(searcher.latencies["ingesting"]),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=60)
    parser.add_argument("--chunks-per-file", type=int, default=20)
    parser.add_argument("--search-clients", type=int, default=2)
    parser.add_argument("--phase-s", type=float, default=15.0, help="idle search phase length")
    parser.add_argument("--replicas", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="per replica; 0: the spec's")
    parser.add_argument("--online-replicas", type=int, default=0)
    parser.add_argument(
        "--ingest-concurrency",
        type=int,
        nargs="+",
        default=[1],
        help="files at once; each value is measured on a server of its own, in turn",
    )
    parser.add_argument("--rounds", type=int, default=2, help="ingestion/model rounds, best")
    parser.add_argument("--no-append", action="store_true")
    args = parser.parse_args()
    flags = ["--files", "--chunks-per-file", "--search-clients", "--phase-s", "--replicas"]
    flags += ["--threads", "--online-replicas", "--ingest-concurrency", "--rounds"]
    texts = documents(args.files, args.chunks_per_file)
    runs = [measure(args, texts, n) for n in args.ingest_concurrency]
    threads = args.threads or minilm_specs(Settings().home)[-1].threads
    settings = Settings()
    lines = [
        f"## bench_ingest.py: vector store ingestion vs the embedding model ({stamp()})",
        "",
        f"`{command('bench_ingest.py', args, flags)}`; {machine_note()}.",
        "",
        f"{args.files} files, {runs[0].chunks} chunks of all-MiniLM-L6-v2 tokens (the built-in, "
        "latest version), ingested in one file batch (embed batch "
        f"{settings.vector_store_embed_batch}, {settings.vector_store_embed_in_flight} in flight "
        f"per file, the files at once as the first column says), on a fresh server per row, "
        f"best of {args.rounds} interleaved rounds of ingestion and the model; "
        f"the model on {args.replicas} replica(s) of {threads} thread(s), online_replicas "
        f"{args.online_replicas}. The model's own throughput is the same chunk texts sent to "
        "/v1/embeddings of the same server by 8 clients in requests of 16. Then the files are "
        f"ingested again while {args.search_clients} clients search another store (hybrid, "
        "a query embedding each, 20 searches/s each at most).",
        "",
        *table(
            [
                "files at once",
                "ingestion chunks/s",
                "model chunks/s",
                "ingestion / model (≥ 0.8×)",
                "search p50 / p99 idle, ms",
                "search p50 / p99 ingesting, ms",
                "p99 during / idle (≤ 2×)",
                "ingestion while searched, chunks/s",
            ],
            [
                [
                    r.concurrency,
                    r.ingest_rate,
                    r.model_rate,
                    r.ingest_rate / r.model_rate,
                    _ms(r.idle),
                    _ms(r.busy),
                    r.busy[2] / r.idle[2],
                    r.busy_rate,
                ]
                for r in runs
            ],
        ),
    ]
    text = "\n".join(lines)
    print(text)
    if not args.no_append:
        append_section(text)


def _ms(p: tuple[float, float, float]) -> str:
    return f"{p[0] * 1e3:.1f} / {p[2] * 1e3:.1f}"


if __name__ == "__main__":
    main()
