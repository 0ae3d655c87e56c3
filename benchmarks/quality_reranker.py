"""The cross-encoder that ``bench_search_quality.py`` trains, validates and caches.

No cross-encoder installs offline, so the bench makes one: the built-in all-MiniLM-L6-v2's
encoder with a one-logit head (``BertForSequenceClassification``), fine-tuned on
(docstring summary, description) pairs of modules the evaluation never reads. Each step takes
``queries`` queries, each with its own description and ``negatives`` others: half the
nearest by BM25, half the nearest by the MiniLM embedding (the two parts of the hybrid search
it reorders), drawn at random among the top ``HARD_POOL`` of each; the loss is the softmax
cross-entropy of the positive within its group (listwise), which ranks rather than
calibrates.

A held-out slice of the training pairs (``VALIDATION`` queries, never trained on) gives the
curve: at a few checkpoints, nDCG@10 of the reranker over each query's hybrid candidates
(BM25 and vector top ``VAL_CANDIDATES`` fused by reciprocal rank) against the fusion's own
order, so the cost in steps and CPU seconds of a useful reranker is measured, not guessed.

The trained folder is cached under ``~/.cache/aimass-bench/reranker-<hash>/`` where the hash
covers the settings, the training texts and the encoder's weights, so a rerun reuses it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

CACHE = Path.home() / ".cache" / "aimass-bench"
VALIDATION = 32
VAL_CANDIDATES = 16
HARD_POOL = 10
CHECKPOINTS = 2
NEIGHBOUR_TOKENS = 64
"""Tokens of each text when embedding for vector-nearest negatives (cost; order is enough)."""


@dataclass(frozen=True)
class TrainSettings:
    """What the trained model depends on (all of it goes into the cache key)."""

    steps: int = 150
    queries: int = 4
    """Queries per step; each brings ``1 + negatives`` pairs."""
    negatives: int = 3
    max_length: int = 128
    """Tokens per (query, document) pair in training; the served model keeps the same limit."""
    lr: float = 1e-4
    frozen_layers: int = 2
    """MiniLM's embeddings and this many of its first layers are not trained."""
    seed: int = 0


def reranker(encoder: Path, pairs: list[tuple[str, str]], settings: TrainSettings) -> tuple:
    """``(folder, report)``: the cached model for these settings, trained first if missing."""
    key = _cache_key(encoder, pairs, settings)
    folder = CACHE / f"reranker-{key}"
    report_file = folder / "training.json"
    if report_file.exists():
        return folder, {**json.loads(report_file.read_text()), "cached": True}
    tmp = folder.with_name(folder.name + ".partial")
    report = train(tmp, encoder, pairs, settings)
    report_file_tmp = tmp / "training.json"
    report_file_tmp.write_text(json.dumps(report, indent=1))
    tmp.rename(folder)
    return folder, {**report, "cached": False}


def _cache_key(encoder: Path, pairs, settings: TrainSettings) -> str:
    h = hashlib.sha256(json.dumps(asdict(settings), sort_keys=True).encode())
    h.update(json.dumps(pairs).encode())
    weights = encoder / "model.safetensors"
    h.update(str(weights.stat().st_size if weights.exists() else encoder).encode())
    return h.hexdigest()[:12]


def train(out: Path, encoder: Path, pairs: list[tuple[str, str]], s: TrainSettings) -> dict:
    """Train, validate at checkpoints, save to ``out``; the report has the curve."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    torch.manual_seed(s.seed)
    torch.set_num_threads(2)
    rng = random.Random(s.seed)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(str(encoder))
    model = BertForSequenceClassification.from_pretrained(
        str(encoder), num_labels=1, id2label={0: "relevance"}, label2id={"relevance": 0}
    )
    order = list(range(len(pairs)))
    rng.shuffle(order)
    val, train_ids = order[:VALIDATION], order[VALIDATION:]
    bm25_near, vec_near = _neighbours(model.bert, tokenizer, pairs, HARD_POOL + VAL_CANDIDATES)
    candidates = {q: _fused(bm25_near[q], vec_near[q])[:VAL_CANDIDATES] for q in val}
    allowed = set(train_ids)
    hard = {
        q: ([d for d in bm25_near[q] if d in allowed and d != q][:HARD_POOL],
            [d for d in vec_near[q] if d in allowed and d != q][:HARD_POOL])
        for q in train_ids
    }  # fmt: skip
    setup_cpu = time.process_time() - cpu0
    for part in [model.bert.embeddings, *model.bert.encoder.layer[: s.frozen_layers]]:
        part.requires_grad_(False)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=s.lr, weight_decay=0.01)
    warmup = max(1, s.steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda t: min((t + 1) / warmup, max(0.0, (s.steps - t) / (s.steps - warmup)))
    )
    group = 1 + s.negatives
    fusion_ndcg = _mean_ndcg([list(range(len(candidates[q]))) for q in val], val, candidates)
    curve = [_checkpoint(model, tokenizer, pairs, val, candidates, s, 0, None, cpu0, wall0)]
    losses: list[float] = []
    queue: list[int] = []
    for step in range(1, s.steps + 1):
        model.train()
        queries, docs = [], []
        for _ in range(s.queries):
            if not queue:
                queue = train_ids[:]
                rng.shuffle(queue)
            q = queue.pop()
            for d in [q, *_negatives(q, hard[q], train_ids, s.negatives, rng)]:
                queries.append(pairs[q][0])
                docs.append(pairs[d][1])
        batch = tokenizer(queries, docs, padding=True, truncation=True,
                          max_length=s.max_length, return_tensors="pt")  # fmt: skip
        logits = model(**batch).logits.view(s.queries, group)
        loss = torch.nn.functional.cross_entropy(logits, torch.zeros(s.queries, dtype=torch.long))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(float(loss))
        if step % max(1, s.steps // CHECKPOINTS) == 0 or step == s.steps:
            mean_loss = sum(losses) / len(losses)
            losses = []
            curve.append(
                _checkpoint(model, tokenizer, pairs, val, candidates, s, step, mean_loss, cpu0,
                            wall0)
            )  # fmt: skip
    model.eval()
    tokenizer.model_max_length = s.max_length  # serving cuts pairs where training did
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return {
        "settings": asdict(s),
        "train_pairs": len(train_ids),
        "validation_queries": len(val),
        "validation_fusion_ndcg": fusion_ndcg,
        "setup_cpu_s": setup_cpu,
        "curve": curve,
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.perf_counter() - wall0,
        "chance_loss": math.log(group),
    }


def _checkpoint(model, tokenizer, pairs, val, candidates, s, step, loss, cpu0, wall0) -> dict:
    import torch

    model.eval()
    orders = []
    with torch.no_grad():
        for q in val:
            docs = candidates[q]
            batch = tokenizer([pairs[q][0]] * len(docs), [pairs[d][1] for d in docs],
                              padding=True, truncation=True, max_length=s.max_length,
                              return_tensors="pt")  # fmt: skip
            scores = model(**batch).logits.view(-1).numpy()
            orders.append(np.argsort(-scores, kind="stable").tolist())
    rerank = _mean_ndcg(orders, val, candidates)
    fused = _mean_ndcg([_rrf_with_rank(o) for o in orders], val, candidates)
    point = {
        "step": step,
        "loss": loss,
        "val_rerank_ndcg": rerank,
        "val_fused_ndcg": fused,
        "cpu_s": time.process_time() - cpu0,
        "wall_s": time.perf_counter() - wall0,
    }
    print(f"reranker {json.dumps(point)}", flush=True)
    return point


def _rrf_with_rank(order: list[int], k: int = 60) -> list[int]:
    """The candidates' fused order of the rerank order with their hybrid order (position)."""
    score = {c: 1 / (k + 1 + c) for c in range(len(order))}
    for r, c in enumerate(order):
        score[c] += 1 / (k + 1 + r)
    return sorted(score, key=lambda c: -score[c])


def _mean_ndcg(orders: list[list[int]], val: list[int], candidates: dict) -> float:
    total = 0.0
    for q, o in zip(val, orders, strict=True):
        ranked = [candidates[q][i] for i in o][:10]
        total += 1 / math.log2(2 + ranked.index(q)) if q in ranked else 0.0
    return total / len(val)


def _negatives(q: int, hard: tuple[list[int], list[int]], pool: list[int], n: int, rng) -> list:
    """``n`` other documents: half BM25-near, half vector-near, topped up at random."""
    chosen: list[int] = []
    for source, count in ((hard[0], n // 2), (hard[1], n - n // 2)):
        options = [d for d in source if d not in chosen]
        chosen += rng.sample(options, min(count, len(options)))
    while len(chosen) < n:
        d = rng.choice(pool)
        if d != q and d not in chosen:
            chosen.append(d)
    return chosen


def _fused(*rankings: list[int], k: int = 60) -> list[int]:
    score: dict[int, float] = {}
    for ranking in rankings:
        for r, d in enumerate(ranking):
            score[d] = score.get(d, 0.0) + 1 / (k + 1 + r)
    return sorted(score, key=lambda d: -score[d])


def _neighbours(bert, tokenizer, pairs, k: int) -> tuple[list[list[int]], list[list[int]]]:
    """Each query's ``k`` nearest descriptions by BM25 and by mean-pooled MiniLM vectors."""
    import torch

    from aimass.search.keyword import BM25

    bm25 = BM25()
    bm25.add(enumerate(d for _, d in pairs))
    by_words = [[d for d, _ in bm25.search(q, k)] for q, _ in pairs]

    def embed(texts: list[str]) -> torch.Tensor:
        out = []
        with torch.no_grad():
            for i in range(0, len(texts), 64):
                b = tokenizer(texts[i : i + 64], padding=True, truncation=True,
                              max_length=NEIGHBOUR_TOKENS, return_tensors="pt")  # fmt: skip
                hidden = bert(**b).last_hidden_state
                mask = b["attention_mask"].unsqueeze(-1).float()
                out.append(torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1)))
        return torch.cat(out)

    sims = embed([q for q, _ in pairs]) @ embed([d for _, d in pairs]).T
    by_vector = sims.topk(min(k, len(pairs)), dim=1).indices.tolist()
    return by_words, by_vector
