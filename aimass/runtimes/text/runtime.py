"""The ``transformers`` runtime: embeddings, reranking and text classification.

Serves a local Hugging Face model folder (sentence-transformers layout, plain encoder,
cross-encoder or sequence classifier; see ``text_layout``) with PyTorch in fp32, or an
exported ONNX graph of it (``options.onnx``, e.g. the int8 variant made by
``aimass models optimize``). Tokenization, batching and pooling are the same code for both.

Payload in (one row per input; the batcher concatenates requests):

* ``embedding`` and ``text-classification``: ``text`` (object array; a row is a ``str`` or a
  sequence of token ids) and optionally ``truncate`` (bool per row; default: refuse rows
  longer than ``max_length``).
* ``rerank``: ``query`` and ``document`` (object arrays of ``str``): one row per pair.

Payload out: ``embedding`` float32 ``(rows, dim)`` | ``score`` float32 ``(rows,)`` |
``scores`` float32 ``(rows, labels)`` + ``label`` (object); always ``tokens`` int64 per row.
Rows that cannot be computed come back under ``ROW_ERRORS`` so only their requests fail.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aimass.errors import InvalidInput
from aimass.runtimes.base import ROW_ERRORS, Payload, Runtime, TensorInfo
from aimass.runtimes.text.backends import TextBackend, create_backend
from aimass.runtimes.text.batching import pad_rows, plan_batches
from aimass.runtimes.text.layout import KIND_BY_TASK, TextLayout, read_layout
from aimass.runtimes.text.pooling import activate, normalize, pool
from aimass.runtimes.text.tokenize import TextTokenizer, TokenizedRows
from aimass.spec import ModelSpec

TEXT, TRUNCATE, QUERY, DOCUMENT = "text", "truncate", "query", "document"
EMBEDDING, SCORE, SCORES, LABEL, TOKENS = "embedding", "score", "scores", "label", "tokens"


def create_transformers_runtime(spec: ModelSpec) -> Runtime:
    """Factory named by ``aimass.runtimes``; checks the task before anything is read."""
    read_task_kind(spec)
    return TransformersRuntime(spec)


def read_task_kind(spec: ModelSpec) -> str:
    """``encoder``, ``cross-encoder`` or ``classifier``; InvalidInput for other tasks."""
    if spec.task not in KIND_BY_TASK:
        raise InvalidInput(
            f"runtime 'transformers' serves tasks {', '.join(KIND_BY_TASK)}; got {spec.task!r}",
            param="task",
        )
    return KIND_BY_TASK[spec.task]


class TextPipeline:
    """Tokenizer + backend + pooling: what a batch of rows goes through, usable without a spec.

    The optimizer's quality gate runs the fp32 and the int8 pipelines through this same code.
    """

    def __init__(self, layout: TextLayout, backend: TextBackend, max_batch_tokens: int | None):
        self.layout = layout
        self.backend = backend
        self.tokenizer = TextTokenizer(layout.model_dir, layout.max_length)
        self.max_batch_tokens = max_batch_tokens

    def run_texts(self, texts: list[Any], truncate: list[bool] | None = None) -> Payload:
        """Embeddings (encoders) or label scores (classifiers) for texts or token-id lists."""
        rows = self.tokenizer.encode_texts(texts, truncate or [False] * len(texts))
        return self._outputs(rows)

    def score_pairs(self, queries: list[str], documents: list[str]) -> Payload:
        """Relevance scores of (query, document) pairs (cross-encoders)."""
        return self._outputs(self.tokenizer.encode_pairs(queries, documents))

    def _outputs(self, rows: TokenizedRows) -> Payload:
        good = np.array([i for i, e in enumerate(rows.errors) if e is None], dtype=np.int64)
        values = self._compute(rows, good)
        out = self._shape_outputs(values, len(rows.ids))
        tokens = rows.lengths
        tokens[[i for i, e in enumerate(rows.errors) if e is not None]] = 0
        out[TOKENS] = tokens
        if any(e is not None for e in rows.errors):
            out[ROW_ERRORS] = rows.errors
        return out

    def _compute(self, rows: TokenizedRows, good: np.ndarray) -> np.ndarray | None:
        """Model outputs (pooled vectors or activated scores) for the rows in ``good``."""
        result: np.ndarray | None = None
        lengths = rows.lengths[good]
        for group in plan_batches(lengths, self.max_batch_tokens):
            idx = good[group]
            feeds = pad_rows(
                [rows.ids[i] for i in idx], [rows.type_ids[i] for i in idx], self.tokenizer.pad_id
            )
            values = self._head(self.backend.run(feeds), feeds["attention_mask"])
            if result is None:
                result = np.zeros((len(rows.ids), *values.shape[1:]), dtype=np.float32)
            result[idx] = values
        return result

    def _head(self, raw: np.ndarray, mask: np.ndarray) -> np.ndarray:
        if self.layout.kind == "encoder":
            vectors = pool(raw, mask, self.layout.pooling)
            return normalize(vectors) if self.layout.normalize else vectors
        return activate(raw, self.layout.activation)

    def _shape_outputs(self, values: np.ndarray | None, n: int) -> Payload:
        kind = self.layout.kind
        if kind == "encoder":
            dim = self.layout.dimensions if values is None else values.shape[1]
            return {EMBEDDING: np.zeros((n, dim), np.float32) if values is None else values}
        width = len(self.layout.labels)
        scores = np.zeros((n, width), np.float32) if values is None else values
        if kind == "cross-encoder":
            return {SCORE: scores[:, -1].copy()}
        labels = np.empty(n, dtype=object)
        labels[:] = [self.layout.labels[j] for j in scores.argmax(axis=1)]
        return {SCORES: scores, LABEL: labels}


class TransformersRuntime(Runtime):
    """One replica's text model: see the module docstring for the payload it takes."""

    def __init__(self, spec: ModelSpec):
        super().__init__(spec)
        self.pipeline: TextPipeline | None = None

    def load(self) -> None:
        layout = read_layout(self.spec)
        backend = create_backend(self.spec.source, self.spec.options, layout, self.spec.threads)
        self.pipeline = TextPipeline(layout, backend, self.spec.batching.max_batch_tokens)

    def infer(self, batch: Payload) -> Payload:
        pipeline = self._ready()
        if pipeline.layout.kind == "cross-encoder":
            queries, documents = _column(batch, QUERY), _column(batch, DOCUMENT)
            return pipeline.score_pairs(list(queries), list(documents))
        texts = _column(batch, TEXT)
        truncate = batch.get(TRUNCATE)
        flags = [False] * len(texts) if truncate is None else [bool(t) for t in truncate]
        return pipeline.run_texts(list(texts), flags)

    def inputs(self) -> list[TensorInfo]:
        if self.spec.task == "rerank":
            return [TensorInfo(QUERY, "BYTES", [-1]), TensorInfo(DOCUMENT, "BYTES", [-1])]
        return [TensorInfo(TEXT, "BYTES", [-1])]  # ``truncate`` is optional, so not declared

    def outputs(self) -> list[TensorInfo]:
        tokens = TensorInfo(TOKENS, "INT64", [-1])
        if self.spec.task == "rerank":
            return [TensorInfo(SCORE, "FP32", [-1]), tokens]
        if self.spec.task == "embedding":
            dim = self.pipeline.layout.dimensions if self.pipeline else -1
            return [TensorInfo(EMBEDDING, "FP32", [-1, dim]), tokens]
        width = len(self.pipeline.layout.labels) if self.pipeline else -1
        return [TensorInfo(SCORES, "FP32", [-1, width]), TensorInfo(LABEL, "BYTES", [-1]), tokens]

    def describe(self) -> dict[str, Any]:
        pipeline = self._ready()
        layout = pipeline.layout
        info: dict[str, Any] = {
            "kind": layout.kind,
            "backend": pipeline.backend.name,
            "max_length": layout.max_length,
            "vocab_size": pipeline.tokenizer.vocab_size,
        }
        if layout.kind == "encoder":
            info.update(
                dimensions=layout.dimensions, pooling=layout.pooling, normalize=layout.normalize
            )
        else:
            info.update(labels=layout.labels, activation=layout.activation)
        return info

    def unload(self) -> None:
        self.pipeline = None

    def _ready(self) -> TextPipeline:
        if self.pipeline is None:
            raise RuntimeError("runtime used before load()")
        return self.pipeline


def _column(batch: Payload, key: str) -> list[Any]:
    """One input's rows; UTF-8 bytes (as the v2 protocol's BYTES carry them) become str."""
    if key not in batch:
        raise InvalidInput(f"input {key!r} is required (have: {', '.join(sorted(batch))})")
    values = np.asarray(batch[key], dtype=object).reshape(-1)
    return [v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in values]
