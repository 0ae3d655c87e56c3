"""Text classification method: a softmax-regression head trained on the frozen embeddings of
an embeddings model, from ``{"text", "label"}`` lines.

The new model is served by the ``transformers`` runtime as a ``text-classification`` model:
its folder holds the encoder's tokenizer and ``config.json`` (with ``id2label``) and
``classifier.onnx``, one graph of encoder + pooling + head that outputs the logits; clients
get labels and scores from v2 infer (outputs ``label`` and ``scores``). Trained from an
embeddings model it is a new model named ``<base>-<suffix>`` (``<base>-classifier``); trained
from such a classifier it is a new version of it, on the same encoder (kept in its notes).
Evaluation: accuracy, macro-F1, log loss and AUC, for the new head and the serving version.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from aimass.errors import InvalidInput
from aimass.jobs.finetune.data import json_lines, text_field
from aimass.registry.models import ModelEntry
from aimass.spec import ModelSpec

BASE_LEARNING_RATE = 0.05
GRAPH = "classifier.onnx"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt", "sentencepiece.bpe.model", "spiece.model", "merges.txt",
                   "vocab.json")  # fmt: skip


def _example(line: dict[str, Any]) -> dict[str, Any]:
    label = line.get("label")
    if isinstance(label, bool) or not isinstance(label, str | int) or str(label).strip() == "":
        raise ValueError("'label' must be a non-empty string or an integer")
    return {"text": text_field(line, "text"), "label": str(label)}


class ClassifierMethod:
    name = "text-classification"
    metric = "accuracy"
    defaults = {"n_epochs": 20, "batch_size": 32, "learning_rate_multiplier": 1.0}

    def fits(self, first_line: bytes) -> bool:
        return b'"label"' in first_line

    @staticmethod
    def class_of(row: dict[str, Any]) -> str:
        """A held-out split without a validation file is stratified by label
        (``data.holdout``)."""
        return row["label"]

    def parse(self, data: bytes, hyper: dict[str, Any], base: ModelEntry) -> list[dict[str, Any]]:
        rows = json_lines(data, _example)
        if len({r["label"] for r in rows}) < 2:
            raise ValueError("need examples of at least 2 labels")
        return rows

    def target(self, base: ModelEntry, suffix: str | None) -> str:
        if base.spec.task == "text-classification":
            return base.spec.name
        return f"{base.spec.name}-{suffix or 'classifier'}"[:128]

    @staticmethod
    def encoder(base: ModelEntry) -> str:
        """The encoder folder: the base itself, or the one a classifier was trained on."""
        if base.spec.task == "embedding":
            return base.spec.source
        encoder = base.notes.get("fine_tune", {}).get("encoder")
        if not encoder:
            raise InvalidInput(
                f"model {base.spec.name!r} was not made by a fine-tuning job, so its encoder "
                "is unknown; fine-tune the embeddings model it was built on",
                param="model",
            )
        return encoder

    def candidate_spec(
        self, base: ModelEntry, name: str, version: int, folder: Path, result: dict[str, Any]
    ) -> ModelSpec:
        return ModelSpec(
            name=name,
            version=version,
            task="text-classification",
            runtime="transformers",
            source=str(folder),
            options={"onnx": GRAPH},
            batching=base.spec.batching,
            limits=base.spec.limits,
            threads=base.spec.threads,
            description=f"classifier on the embeddings of {base.spec.name}",
        )


# ---- in the child process -------------------------------------------------------------------


def train(config: dict[str, Any], report) -> dict[str, Any]:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    torch.manual_seed(int(config["seed"]))  # threads: OMP_NUM_THREADS, set by run_child
    hyper, workdir = config["hyper"], Path(config["workdir"])
    rows, valid = config["train"], config["valid"]
    labels = sorted({r["label"] for r in rows} | {r["label"] for r in valid})
    index = {label: i for i, label in enumerate(labels)}
    encoder = SentenceTransformer(config["encoder"], device="cpu")
    cache = workdir / "embedded.npz"
    if cache.exists():
        x = np.load(cache)["x"]
    else:
        x = encoder.encode([r["text"] for r in rows], convert_to_numpy=True)
        np.savez(cache, x=x)
        report.event(f"embedded {len(rows)} training texts", rows=len(rows))
    y = torch.tensor([index[r["label"]] for r in rows])
    head = torch.nn.Linear(x.shape[1], len(labels))
    done = report.checkpoint.get("epoch", 0)
    if done:
        head.load_state_dict(torch.load(report.checkpoint["path"]))
        report.event(f"resuming after epoch {done} from its checkpoint", epoch=done)
    rate = BASE_LEARNING_RATE * float(hyper["learning_rate_multiplier"])
    optimizer = torch.optim.Adam(head.parameters(), lr=rate)
    size, epochs = int(hyper["batch_size"]), int(hyper["n_epochs"])
    features = torch.from_numpy(x)
    generator = torch.Generator().manual_seed(int(config["seed"]))
    per_epoch = -(-len(rows) // size)
    step, report.total = done * per_epoch, per_epoch * epochs
    valid_x = encoder.encode([r["text"] for r in valid], convert_to_numpy=True)
    truth = np.array([index[r["label"]] for r in valid])
    for epoch in range(done + 1, epochs + 1):
        order = torch.randperm(len(rows), generator=generator)
        total = 0.0
        for first in range(0, len(rows), size):
            pick = order[first : first + size]
            value = torch.nn.functional.cross_entropy(head(features[pick]), y[pick])
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            step += 1
            total += float(value.detach())
        path = workdir / f"head-{epoch}.pt"
        torch.save(head.state_dict(), path)
        metrics = {"train_loss": total / per_epoch, **_scores(head, valid_x, truth)}
        report.save(epoch, step, str(path), metrics)
    out = Path(config["out_dir"])
    _export(encoder, head, labels, out)
    serving = None
    if config.get("serving_source"):
        serving = _served_scores(Path(config["serving_source"]), valid, labels)
    return {"candidate": _scores(head, valid_x, truth), "serving": serving, "steps": step}


def _scores(head, x, truth) -> dict[str, float]:
    import torch

    from aimass.jobs.finetune.metrics import classification

    with torch.inference_mode():
        proba = torch.softmax(head(torch.from_numpy(x)), dim=1).numpy()
    return classification(proba, truth)


def _export(encoder, head, labels: list[str], out: Path) -> None:
    """Tokenizer + config (with the labels) + one ONNX graph: encoder, pooling, head."""
    import torch

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    transformer = encoder[0]
    model = transformer.auto_model
    source = Path(transformer.model.name_or_path) if hasattr(transformer, "model") else None
    encoder.tokenizer.save_pretrained(str(out))
    for name in TOKENIZER_FILES:
        if source is not None and (source / name).exists() and not (out / name).exists():
            shutil.copy(source / name, out / name)
    config = model.config.to_dict()
    config.update(
        id2label={str(i): label for i, label in enumerate(labels)},
        label2id={label: i for i, label in enumerate(labels)},
        architectures=["OnnxTextClassifier"],
    )
    (out / "config.json").write_text(json.dumps(config, indent=2))
    pooling = _pooling(encoder[1].get_config_dict())
    normalize = any(type(m).__name__ == "Normalize" for m in encoder)
    graph = _graph(model, head, pooling, normalize)
    names = [n for n in ("input_ids", "attention_mask", "token_type_ids")
             if n in graph.accepted]  # fmt: skip
    example = tuple(torch.ones((2, 8), dtype=torch.int64) for _ in names)
    axes = {n: {0: "batch", 1: "sequence"} for n in names}
    axes["logits"] = {0: "batch"}
    graph.names = names
    with torch.inference_mode():
        torch.onnx.export(graph, example, str(out / GRAPH), input_names=names,
                          output_names=["logits"], dynamic_axes=axes, opset_version=17,
                          dynamo=False)  # fmt: skip


def _pooling(config: dict[str, Any]) -> str:
    """The Pooling module's mode: ``pooling_mode`` (sentence-transformers 6) or the older
    ``pooling_mode_*_tokens`` flags."""
    if "pooling_mode" in config:
        return str(config["pooling_mode"])
    return "cls" if config.get("pooling_mode_cls_token") else "mean"


def _graph(model, head, pooling: str, normalize: bool):
    """A module for export: encoder → pooling (mean or CLS) → optional L2 norm → the head."""
    import inspect

    import torch

    if pooling not in ("mean", "cls"):
        raise ValueError(f"pooling {pooling!r}: the classifier graph supports mean and cls")

    class Graph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.head = model, head
            self.accepted = set(inspect.signature(model.forward).parameters)
            self.names: list[str] = []

        def forward(self, *tensors):
            feeds = dict(zip(self.names, tensors, strict=True))
            states = self.model(**feeds)[0]
            if pooling == "cls":
                pooled = states[:, 0]
            else:
                mask = feeds["attention_mask"].unsqueeze(-1).to(states.dtype)
                pooled = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            if normalize:
                pooled = torch.nn.functional.normalize(pooled, dim=1)
            return self.head(pooled)

    return Graph()


def _served_scores(folder: Path, valid: list[dict[str, Any]], labels: list[str]) -> dict | None:
    """The serving classifier's metrics: its ONNX graph on the validation texts (None when it
    does not know the same labels)."""
    import numpy as np
    import onnxruntime
    from transformers import AutoTokenizer

    from aimass.jobs.finetune.metrics import classification

    config = json.loads((folder / "config.json").read_text())
    served = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    if sorted(served) != labels:
        return None
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    session = onnxruntime.InferenceSession(str(folder / GRAPH))
    wanted = {i.name for i in session.get_inputs()}
    feeds = tokenizer([r["text"] for r in valid], padding=True, truncation=True,
                      return_tensors="np")  # fmt: skip
    logits = session.run(None, {k: v.astype(np.int64) for k, v in feeds.items() if k in wanted})[0]
    proba = np.exp(logits - logits.max(axis=1, keepdims=True))
    proba /= proba.sum(axis=1, keepdims=True)
    order = [served.index(label) for label in labels]
    truth = np.array([labels.index(r["label"]) for r in valid])
    return classification(proba[:, order], truth)
