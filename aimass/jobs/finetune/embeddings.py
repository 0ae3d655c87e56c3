"""Embeddings method: sentence-transformers fine-tuning on (anchor, positive[, negative])
pairs with MultipleNegativesRankingLoss (the other pairs of a batch are the negatives).

Lines: ``{"anchor", "positive"[, "negative"]}``, or OpenAI-like ``{"query", "document"}``.
The new version is written in the base model's own folder layout (its sentence-transformers
files copied, the transformer's weights replaced), so the ``transformers`` runtime loads it as
it loads the base; it is served in fp32 (an int8 base's ONNX graph is not carried over).
Evaluation: recall@1, recall@5, MRR and nDCG@10 of each validation anchor's positive among all
validation documents, for the new weights and for the serving version's folder.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

from aimass.jobs.finetune.data import json_lines, text_field
from aimass.registry.models import ModelEntry
from aimass.spec import ModelSpec

BASE_LEARNING_RATE = 2e-5
WEIGHT_FILES = ("*.safetensors", "*.bin", "*.onnx", "*.onnx_data", "*.pt")
"""Files of the base folder not copied into the new version (its weights, ONNX graphs)."""


def _pair(line: dict[str, Any]) -> dict[str, Any]:
    if "anchor" in line or "positive" in line:
        anchor, positive = text_field(line, "anchor"), text_field(line, "positive")
    elif "query" in line or "document" in line:
        anchor, positive = text_field(line, "query"), text_field(line, "document")
    else:
        raise ValueError('expected {"anchor", "positive"[, "negative"]} or {"query", "document"}')
    return {"anchor": anchor, "positive": positive, "negative": text_field(line, "negative", False)}


class EmbeddingsMethod:
    name = "embeddings"
    metric = "ndcg@10"
    defaults = {"n_epochs": 1, "batch_size": 16, "learning_rate_multiplier": 1.0}

    def fits(self, first_line: bytes) -> bool:
        return b'"label"' not in first_line

    def parse(self, data: bytes, hyper: dict[str, Any], base: ModelEntry) -> list[dict[str, Any]]:
        rows = json_lines(data, _pair)
        if len(rows) < 2:
            raise ValueError(f"need at least 2 pairs (the loss contrasts them), got {len(rows)}")
        return rows

    def target(self, base: ModelEntry, suffix: str | None) -> str:
        return base.spec.name

    def candidate_spec(
        self, base: ModelEntry, name: str, version: int, folder: Path, result: dict[str, Any]
    ) -> ModelSpec:
        options = {k: v for k, v in base.spec.options.items() if not k.startswith("onnx")}
        return base.spec.model_copy(
            update={
                "name": name,
                "version": version,
                "source": str(folder),
                "options": options,
                "sha256": {},
                "description": f"fine-tuned from {base.spec.name}:{base.spec.version}",
            }
        )


# ---- in the child process -------------------------------------------------------------------


def train(config: dict[str, Any], report) -> dict[str, Any]:
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    torch.manual_seed(int(config["seed"]))  # threads: OMP_NUM_THREADS, set by run_child
    hyper, workdir = config["hyper"], Path(config["workdir"])
    rows, valid = config["train"], config["valid"]
    done = report.checkpoint.get("epoch", 0)
    start = report.checkpoint.get("path") if done else None
    model = SentenceTransformer(start or config["base_source"], device="cpu")
    loss = MultipleNegativesRankingLoss(model)
    rate = BASE_LEARNING_RATE * float(hyper["learning_rate_multiplier"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=rate)
    size, epochs = int(hyper["batch_size"]), int(hyper["n_epochs"])
    per_epoch = -(-len(rows) // size)
    step, report.total = done * per_epoch, per_epoch * epochs
    if done:
        report.event(f"resuming after epoch {done} from its checkpoint", epoch=done)
    for epoch in range(done + 1, epochs + 1):
        order = list(range(len(rows)))
        random.Random(config["seed"] + epoch).shuffle(order)
        model.train()
        total = 0.0
        for first in range(0, len(order), size):
            batch = [rows[i] for i in order[first : first + size]]
            if len(batch) < 2:
                continue
            columns = [[r["anchor"] for r in batch], [r["positive"] for r in batch]]
            if all(r["negative"] for r in batch):
                columns.append([r["negative"] for r in batch])
            features = [model.tokenize(texts) for texts in columns]
            value = loss(features, torch.arange(len(batch)))
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            step += 1
            total += float(value.detach())
            report.progress(epoch, step)
        model.eval()
        path = workdir / f"epoch-{epoch}"
        model.save(str(path))
        metrics = {"train_loss": total / max(1, per_epoch), **_evaluate(model, valid)}
        report.save(epoch, step, str(path), metrics)
    out = Path(config["out_dir"])
    _export(model, Path(config["base_source"]), out)
    serving = None
    if config.get("serving_source"):
        serving = _evaluate(SentenceTransformer(config["serving_source"], device="cpu"), valid)
    return {"candidate": _evaluate(model, valid), "serving": serving, "steps": step}


def _evaluate(model, valid: list[dict[str, Any]]) -> dict[str, float]:
    from aimass.jobs.finetune.metrics import retrieval

    documents = list(dict.fromkeys(
        [r["positive"] for r in valid] + [r["negative"] for r in valid if r["negative"]]
    ))  # fmt: skip
    index = {text: i for i, text in enumerate(documents)}
    queries = model.encode([r["anchor"] for r in valid], convert_to_numpy=True)
    docs = model.encode(documents, convert_to_numpy=True)
    return retrieval(queries, docs, [index[r["positive"]] for r in valid])


def _export(model, base: Path, out: Path) -> None:
    """The base folder's layout with the trained transformer weights: the text runtime reads
    that layout (the sentence-transformers files of this version may be newer than it)."""
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(base, out, ignore=shutil.ignore_patterns(*WEIGHT_FILES))
    transformer = out
    modules = base / "modules.json"
    if modules.exists():
        for module in json.loads(modules.read_text()):
            if module.get("type", "").endswith("Transformer"):
                transformer = out / module.get("path", "")
    model[0].auto_model.save_pretrained(str(transformer))
