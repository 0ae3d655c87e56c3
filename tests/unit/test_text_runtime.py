"""The transformers runtime on tiny random models: same numbers as the reference libraries."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aimass.errors import InvalidInput
from aimass.runtimes import create_runtime
from aimass.runtimes.base import ROW_ERRORS
from aimass.spec import ModelSpec
from tests.factories_text import SENTENCES, reference_scores, tiny_classifier, tiny_encoder


def _objects(items: list) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    for i, item in enumerate(items):
        array[i] = item
    return array


def _runtime(path: Path, task: str = "embedding", max_batch_tokens: int | None = None, **options):
    spec = ModelSpec(
        name="m",
        task=task,
        runtime="transformers",
        source=str(path),
        options=options,
        batching={"max_batch_tokens": max_batch_tokens},
    )
    runtime = create_runtime(spec)
    runtime.load()
    return runtime


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("st"), max_length=16)


@pytest.fixture(scope="module")
def cross_dir(tmp_path_factory) -> Path:
    return tiny_classifier(tmp_path_factory.mktemp("cross"))


def test_embeddings_match_sentence_transformers(st_dir):
    from sentence_transformers import SentenceTransformer

    runtime = _runtime(st_dir, max_batch_tokens=40)
    texts = [*SENTENCES, "dogs " * 20]
    out = runtime.infer({"text": _objects(texts), "truncate": np.ones(len(texts), bool)})
    reference = SentenceTransformer(str(st_dir), device="cpu").encode(texts)
    assert _cosines(out["embedding"], reference).min() >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, rtol=1e-5)
    assert out["tokens"][-1] == 16 and ROW_ERRORS not in out


def test_token_budget_splits_padded_sub_batches_without_changing_results(st_dir):
    whole = _runtime(st_dir)
    split = _runtime(st_dir, max_batch_tokens=24)
    seen: list[tuple[int, int]] = []
    run = split.pipeline.backend.run
    split.pipeline.backend.run = lambda feeds: seen.append(feeds["input_ids"].shape) or run(feeds)
    texts = _objects(SENTENCES)
    a, b = whole.infer({"text": texts}), split.infer({"text": texts})
    assert len(seen) > 1 and all(rows * width <= 24 or rows == 1 for rows, width in seen)
    assert [w for _, w in seen] == sorted(w for _, w in seen)
    assert _cosines(a["embedding"], b["embedding"]).min() >= 0.9999


def test_token_ids_give_the_same_embedding_as_the_text(st_dir):
    from tokenizers import Tokenizer

    runtime = _runtime(st_dir)
    ids = (
        Tokenizer.from_file(str(st_dir / "tokenizer.json"))
        .encode(SENTENCES[1], add_special_tokens=False)
        .ids
    )
    out = runtime.infer({"text": _objects([SENTENCES[1], ids, np.array(ids)])})
    assert _cosines(out["embedding"][:1], out["embedding"][1:]).min() >= 0.99999
    assert out["tokens"].tolist() == [len(ids) + 2] * 3


def test_over_long_row_fails_alone_unless_truncated(st_dir):
    runtime = _runtime(st_dir)
    texts = _objects(["hello world", "dogs " * 40, list(range(40)), [10_000]])
    out = runtime.infer({"text": texts, "truncate": np.zeros(4, bool)})
    errors = out[ROW_ERRORS]
    assert errors[0] is None and "42 tokens" in errors[1] and "16 (max_length)" in errors[1]
    assert "limit of 16" in errors[2] and "vocabulary" in errors[3]
    assert np.linalg.norm(out["embedding"][0]) > 0.99 and out["tokens"][1] == 0
    cut = runtime.infer({"text": texts[:3], "truncate": np.ones(3, bool)})
    assert ROW_ERRORS not in cut and cut["tokens"].tolist()[1:] == [16, 16]


def test_bytes_rows_are_text_and_missing_input_is_named(st_dir):
    runtime = _runtime(st_dir)
    out = runtime.infer({"text": _objects([b"hello world", "hello world"])})
    assert _cosines(out["embedding"][:1], out["embedding"][1:])[0] >= 0.99999
    with pytest.raises(InvalidInput, match="'text'"):
        runtime.infer({"words": _objects(["x"])})


@pytest.mark.parametrize("pooling", ["cls", "last", "max"])
def test_plain_encoder_pooling_option(tmp_path, pooling):
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = tiny_encoder(tmp_path, sentence_transformers=False)
    runtime = _runtime(path, pooling=pooling, normalize=False)
    out = runtime.infer({"text": _objects(SENTENCES[:3])})
    batch = AutoTokenizer.from_pretrained(str(path))(
        SENTENCES[:3], padding=True, return_tensors="pt"
    )
    with torch.inference_mode():
        hidden = AutoModel.from_pretrained(str(path))(**batch).last_hidden_state
    mask = batch["attention_mask"]
    if pooling == "cls":
        expected = hidden[:, 0]
    elif pooling == "last":
        expected = hidden[torch.arange(3), mask.sum(1) - 1]
    else:
        expected = hidden.masked_fill(mask[..., None] == 0, -1e9).max(1).values
    np.testing.assert_allclose(out["embedding"], expected.numpy(), atol=1e-5)


def test_rerank_scores_are_the_models_own(cross_dir):
    runtime = _runtime(cross_dir, task="rerank")
    documents = SENTENCES
    query = "what is the capital of france?"
    out = runtime.infer(
        {"query": _objects([query] * len(documents)), "document": _objects(documents)}
    )
    logits = reference_scores(cross_dir, [(query, d) for d in documents])[:, 0]
    np.testing.assert_allclose(out["score"], 1 / (1 + np.exp(-logits)), atol=1e-5)
    assert np.argsort(-out["score"]).tolist() == np.argsort(-logits).tolist()
    assert runtime.describe()["labels"] == ["relevance"]


def test_long_pairs_are_cut_to_the_limit(cross_dir):
    runtime = _runtime(cross_dir, task="rerank")
    out = runtime.infer({"query": _objects(["cat " * 50]), "document": _objects(["dog " * 50])})
    assert out["tokens"].tolist() == [48] and np.isfinite(out["score"]).all()


def test_text_classification_returns_labels_with_scores(tmp_path):
    path = tiny_classifier(tmp_path, labels=["neg", "neu", "pos"])
    runtime = _runtime(path, task="text-classification")
    out = runtime.infer({"text": _objects(SENTENCES[:4])})
    assert out["scores"].shape == (4, 3)
    np.testing.assert_allclose(out["scores"].sum(1), 1.0, rtol=1e-5)
    assert out["label"].tolist() == [["neg", "neu", "pos"][i] for i in out["scores"].argmax(1)]
    assert [t.name for t in runtime.outputs()] == ["scores", "label", "tokens"]


def test_unsupported_task_is_refused_before_loading(tmp_path):
    spec = ModelSpec(name="m", task="regression", runtime="transformers", source=str(tmp_path))
    with pytest.raises(InvalidInput, match="task"):
        create_runtime(spec)
