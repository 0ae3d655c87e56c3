"""Vector store retrieval quality (nDCG@10 per search mode) and ingestion, in one run.

No IR test collection with relevance labels installs offline (BEIR's SciFact and NFCorpus are
downloaded at run time by ``beir`` / ``ir_datasets``; no PyPI package bundles them), so the
labelled set is built from a corpus that ships with the environment: the docstrings of
numpy, scipy and the standard library. Each function or class with a one-line summary and a
longer description gives a document (the description, without the summary line and without
the object's own name) and a query (the summary line); the one relevant document of a query is
its own description. It is a known-item search: nDCG@10 = 1 / log2(1 + rank of that document).

Hybrid + rerank: no cross-encoder installs offline, so the script trains one before the
server starts (``quality_reranker.py``: the built-in all-MiniLM-L6-v2's encoder with a
one-logit head, trained listwise on (summary, description) pairs of *other* modules,
``TRAIN_MODULES``, disjoint from ``MODULES``; a docstring both lists share is dropped, so no
evaluation query or document is seen in training; hard negatives from BM25 and from the
MiniLM vectors; cached by its settings so a rerun does not train again). The server serves
it as a ``rerank`` model. Before the quality rows, a sanity check: for some evaluation
queries, /v1/rerank scores the query's own description against random others, and the
same pairs are scored by the model in this process (the server's scores must be the
model's own). Each rerank row is a separate search setting: the hybrid's top
``rerank_candidates`` reordered by the model (``rerank_fusion: none``) or the two orders
fused by rank (``rerank_fusion: rrf``); every row is reported.

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
import os
import random
import re
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import append_section, command, machine_note, pcts, stamp
from quality_reranker import VAL_CANDIDATES, TrainSettings, reranker

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
    "pandas", "sklearn.linear_model", "sklearn.preprocessing", "sklearn.metrics",
    "sklearn.cluster", "sklearn.decomposition", "sklearn.model_selection", "sklearn.ensemble",
    "networkx", "networkx.algorithms", "torch", "torch.nn.functional", "matplotlib.pyplot",
    "sympy", "PIL.Image", "scipy.cluster.vq", "scipy.odr",
]  # fmt: skip
MODES = ["vector", "keyword", "hybrid"]
RERANKER = "docstring-reranker"
RERANK_ROWS = [(20, "none"), (50, "none"), (20, "rrf")]
"""(rerank_candidates, rerank_fusion) per rerank row."""
BATCH_FILES = 500
SANITY_QUERIES = 24
SANITY_OTHERS = 7


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--rerank-queries", type=int, default=100,
                        help="the rerank rows read the first this many queries (each search "
                             "scores up to 50 pairs: the CPU cost)")  # fmt: skip
    parser.add_argument("--home", type=Path, default=None, help="where the MiniLM files live")
    parser.add_argument("--train-steps", type=int, default=400, help="reranker steps; 0: none")
    parser.add_argument("--no-append", action="store_true", help="print, do not write RESULTS.md")
    args = parser.parse_args()
    pairs = corpus(args.docs, seed=0)
    specs = minilm_specs(args.home or Settings().home)  # fp32 and the gated int8 version
    models = [s.model_dump(mode="json", exclude={"sha256"}) for s in specs]
    training = None
    if args.train_steps:
        every = corpus(100_000, seed=0)  # a docstring both lists share is not trained on
        seen = {q for q, _ in every} | {d for _, d in every}
        train_pairs = [
            (q, d)
            for q, d in corpus(100_000, seed=1, modules=TRAIN_MODULES)
            if q not in seen and d not in seen
        ]
        settings = TrainSettings(steps=args.train_steps)
        folder, training = reranker(Path(specs[0].source), train_pairs, settings)
        models.append({"name": RERANKER, "task": "rerank", "runtime": "transformers",
                       "source": str(folder), "threads": 2})  # fmt: skip
    load = os.getloadavg()
    with (
        tempfile.TemporaryDirectory() as tmp,
        run_server(Path(tmp) / "home", models, timeout_s=900) as server,
        httpx.Client(base_url=str(server), timeout=600) as c,
    ):
        figures = run(c, pairs, args.queries, args.rerank_queries if training else 0)
        if training is not None:
            figures["sanity"] = sanity(c, folder, pairs)
    figures.update(training=training, load=load)
    flags = ["--docs", "--queries", "--rerank-queries", "--train-steps"]
    write(args, flags, len(pairs), figures)


def sanity(c: httpx.Client, folder: Path, pairs) -> dict:
    """Does the served reranker put a query's own description first among random others, and
    are the server's scores the model's own (tokenized as pairs, cut, padded, activated)?"""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = BertForSequenceClassification.from_pretrained(str(folder)).eval()
    rng = random.Random(1)
    first, diff = 0, 0.0
    for qi in range(SANITY_QUERIES):
        others = rng.sample([j for j in range(len(pairs)) if j != qi], SANITY_OTHERS)
        docs = [pairs[j][1] for j in [qi, *others]]
        body = {"model": RERANKER, "query": pairs[qi][0], "documents": docs}
        answer = c.post("/v1/rerank", json=body).json()["results"]
        served = [0.0] * len(docs)
        for r in answer:
            served[r["index"]] = r["relevance_score"]
        first += answer[0]["index"] == 0
        with torch.no_grad():
            batch = tokenizer(
                [pairs[qi][0]] * len(docs), docs, padding=True, truncation=True,
                max_length=tokenizer.model_max_length, return_tensors="pt",
            )  # fmt: skip
            own = torch.sigmoid(model(**batch).logits.view(-1)).tolist()
        diff = max(diff, max(abs(a - b) for a, b in zip(served, own, strict=True)))
    return {"first": first / SANITY_QUERIES, "max_diff": diff}


def run(c: httpx.Client, pairs, n_queries: int, n_rerank: int) -> dict:
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
    rows = [(mode, None) for mode in MODES] + (
        [("rerank", r) for r in RERANK_ROWS] if n_rerank else []
    )
    for mode, setting in rows:
        scores = []
        t0 = time.perf_counter()
        for qi in range(min(n_queries if setting is None else n_rerank, len(pairs))):
            body = {"query": pairs[qi][0], "max_num_results": 10, "search_mode": mode}
            if setting is not None:
                body.update(search_mode="hybrid", rerank_model=RERANKER,
                            rerank_candidates=setting[0], rerank_fusion=setting[1])  # fmt: skip
            hits = c.post(f"/v1/vector_stores/{store}/search", json=body).json()["data"]
            ranks = [n + 1 for n, h in enumerate(hits) if by_file.get(h["file_id"]) == qi]
            scores.append(ndcg(ranks[0] if ranks else None))
        quality[(mode, setting)] = (scores, (time.perf_counter() - t0) / len(scores))
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
    names = {
        "vector": "vector (HNSW, MiniLM)",
        "keyword": "keyword (BM25)",
        "hybrid": "hybrid (RRF)",
    }
    lines = []
    for (mode, setting), (scores, seconds) in q.items():
        if setting is None:
            name = names[mode]
        else:
            fusion = ", fused with the hybrid order by RRF" if setting[1] == "rrf" else ""
            name = f"hybrid + rerank (top {setting[0]}{fusion})"
        hybrid = q[("hybrid", None)][0][: len(scores)]
        lines.append(
            f"| {name} | {len(scores)} | {sum(scores) / len(scores):.3f} | "
            f"{sum(hybrid) / len(hybrid):.3f} | {seconds * 1e3:.0f} |"
        )
    rows = "\n".join(lines)
    busy, idle = f["busy"], f["idle"]
    text = f"""## bench_search_quality.py: retrieval quality and ingestion ({stamp()})

`flock /tmp/bench.lock env PYTHONPATH=$PWD {command("bench_search_quality.py", args, flags)}`

Labelled set built from docstrings that ship with the environment (numpy, scipy, standard
library; see the script): {n_docs} documents, one file each, {min(args.queries, n_docs)}
queries (a docstring's summary line; its relevant document is the rest of that docstring,
the object's name removed). Store embedding model: built-in all-MiniLM-L6-v2.

| search mode | queries | nDCG@10 | hybrid's nDCG@10, same queries | ms a search |
|---|---|---|---|---|
{rows}

{training_note(f)}

Ingestion of the {n_docs} files ({f["chunks"]:.0f} chunks, {f["failed"]} failed):
{ingest_rate:.0f} chunks/s; the model itself on the same texts (/v1/embeddings, batches of 64):
{model_rate:.0f} texts/s; ratio {ingest_rate / model_rate:.2f}x.

Search latency, hybrid, one client, {f["searches"]} searches: during ingestion p50/p99
{busy[0] * 1e3:.1f} / {busy[2] * 1e3:.1f} ms; idle afterwards {idle[0] * 1e3:.1f} /
{idle[2] * 1e3:.1f} ms; p99 ratio {busy[2] / idle[2]:.2f}x.

Load average when the server started: {", ".join(f"{x:.2f}" for x in f["load"])}; {machine_note()}
"""
    print(text)
    if not args.no_append:
        append_section(text)


def training_note(f: dict) -> str:
    """The reranker's training (settings, cost, validation curve) and the sanity check."""
    t = f["training"]
    if t is None:
        return "No rerank rows (--train-steps 0)."
    s, sanity = t["settings"], f["sanity"]
    curve = "\n".join(
        f"| {p['step']} | {'-' if p['loss'] is None else format(p['loss'], '.3f')} | "
        f"{p['val_rerank_ndcg']:.3f} | {p['val_fused_ndcg']:.3f} | {p['cpu_s']:.0f} |"
        for p in t["curve"]
    )
    cached = " (cached from an earlier run with the same settings)" if t["cached"] else ""
    return f"""The reranker (`{RERANKER}`, `quality_reranker.py`){cached}: MiniLM's encoder with
a one-logit head, {6 - s["frozen_layers"]} of its 6 layers and the head trained, {s["steps"]}
steps of {s["queries"]} queries × (1 positive + {s["negatives"]} negatives: BM25- and
vector-nearest), softmax loss over each group, at most {s["max_length"]} tokens a pair (served
with the same limit), on {t["train_pairs"]} docstring pairs of {len(TRAIN_MODULES)} other
modules (none of the evaluated ones); {t["cpu_s"]:.0f} s of CPU ({t["wall_s"]:.0f} s wall).
Its curve on {t["validation_queries"]} held-out training queries (their hybrid top {VAL_CANDIDATES};
the fusion's own order gives {t["validation_fusion_ndcg"]:.3f}; chance loss
{t["chance_loss"]:.3f}):

| step | mean loss since the last row | nDCG@10 reranked | nDCG@10 fused by RRF | CPU s |
|---|---|---|---|---|
{curve}

Sanity check of the served model ({SANITY_QUERIES} evaluation queries, each with its own
description and {SANITY_OTHERS} random ones, through /v1/rerank): own description first in
{sanity["first"]:.0%} (chance {1 / (SANITY_OTHERS + 1):.0%}); largest difference between the
server's scores and the model's own in this process {sanity["max_diff"]:.1e}."""


if __name__ == "__main__":
    main()
