"""Fine-tuning's file checks (each error names its line), held-out split, metrics and the
method table, without a server."""

from __future__ import annotations

import numpy as np
import pytest

from aimass.errors import InvalidInput
from aimass.jobs.finetune import metrics
from aimass.jobs.finetune.data import FileInvalid, LineError, csv_rows, holdout
from aimass.jobs.finetune.embeddings import EmbeddingsMethod
from aimass.jobs.finetune.methods import hyperparameters, method_for
from aimass.registry.models import ModelEntry
from aimass.spec import ModelSpec


def entry(runtime: str, task: str, source: str = "/m") -> ModelEntry:
    spec = ModelSpec(name="m", runtime=runtime, task=task, source=source)
    return ModelEntry(spec=spec, desired="loaded", state="ready", last_error=None)


@pytest.mark.parametrize(
    ("data", "line", "words"),
    [
        (b'{"anchor": "a", "positive": "b"}\n\n[1]\n', 3, "JSON object"),
        (b'{"anchor": "a", "positive": "b"}\n{"anchor": "a"}\n', 2, "'positive'"),
        (b'{"query": "q", "document": ""}\n', 1, "non-empty"),
        (b'{"anchor": "a", "positive": "b"}\n{oops\n', 2, "not JSON"),
        (b'{"anchor": "a", "positive": "b"}\n\xff\n', 2, "UTF-8"),
    ],
)
def test_a_bad_jsonl_line_is_named(data, line, words):
    with pytest.raises(LineError) as caught:
        EmbeddingsMethod().parse(data, {}, entry("transformers", "embedding"))
    assert caught.value.line == line and words in str(caught.value)
    error = FileInvalid("training_file", caught.value).as_error()
    assert error["param"] == "training_file" and error["code"] == "invalid_training_file"
    assert f"line {line}:" in error["message"]


def test_csv_rows_read_features_labels_and_line_numbers():
    names, rows, labels, lines = csv_rows(b"a,label,b\n1,yes,2\n\n3,no,\n", "label")
    assert names == ["a", "b"] and labels == ["yes", "no"] and lines == [2, 4]
    assert rows[0] == [1.0, 2.0] and np.isnan(rows[1][1])
    with pytest.raises(LineError, match="line 1: the header has no label column 'y'"):
        csv_rows(b"a,b\n1,2\n", "y")
    with pytest.raises(LineError, match="line 3: 3 values"):
        csv_rows(b"a,label\n1,x\n1,2,3\n", "label")


def test_holdout_is_seeded_and_keeps_both_sides():
    rows = list(range(10))
    train, held = holdout(rows, seed=3)
    assert sorted(train + held) == rows and len(held) == 2
    assert holdout(rows, seed=3) == (train, held)
    assert holdout([1, 2], seed=0)[0] and holdout([1, 2], seed=0)[1]


def test_a_stratified_holdout_holds_out_every_class_with_two_rows_or_more():
    """16 texts in two classes: unstratified, the 3 held out are all of one class for some
    seeds; by label, every seed holds out both classes and trains on both."""
    rows = [{"label": "animal"}] * 8 + [{"label": "place"}] * 8
    rows = [dict(r, i=i) for i, r in enumerate(rows)]
    one_class = 0
    for seed in range(50):
        train, held = holdout(rows, seed, lambda r: r["label"])
        assert {r["label"] for r in held} == {r["label"] for r in train} == {"animal", "place"}
        assert sorted(r["i"] for r in train + held) == list(range(16))
        assert holdout(rows, seed, lambda r: r["label"]) == (train, held)
        one_class += len({r["label"] for r in holdout(rows, seed)[1]}) == 1
    assert one_class > 0  # what the stratification is for
    lone = [{"label": "a"}, {"label": "b"}, {"label": "b"}, {"label": "b"}]
    train, held = holdout(lone, 1, lambda r: r["label"])
    assert {"label": "a"} in train and held == [{"label": "b"}]
    train, held = holdout([{"label": "a"}, {"label": "b"}], 0, lambda r: r["label"])
    assert len(train) == len(held) == 1  # no class has two rows: as unstratified


def test_retrieval_metrics_rank_the_relevant_document():
    docs = np.eye(3, dtype=np.float32)
    perfect = metrics.retrieval(docs, docs, [0, 1, 2])
    assert perfect == {"recall@1": 1.0, "recall@5": 1.0, "mrr": 1.0, "ndcg@10": 1.0}
    swapped = metrics.retrieval(docs, docs, [1, 0, 2])
    assert swapped["recall@1"] == pytest.approx(1 / 3) and swapped["mrr"] == pytest.approx(2 / 3)


def test_classification_and_regression_metrics():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    found = metrics.classification(proba, np.array([0, 1, 1]))
    assert found["accuracy"] == pytest.approx(2 / 3) and found["auc"] == 1.0
    assert metrics.regression(np.array([1.0, 3.0]), np.array([1.0, 1.0]))["rmse"] == pytest.approx(
        2**0.5
    )


def test_the_method_follows_the_base_model_and_the_data():
    encoder = entry("transformers", "embedding").spec
    assert method_for(encoder, b'{"anchor": "a", "positive": "b"}').name == "embeddings"
    assert method_for(encoder, b'{"text": "a", "label": "x"}').name == "text-classification"
    assert method_for(entry("tabular", "classification", "/m.txt").spec, b"a,label").name == (
        "tabular"
    )
    with pytest.raises(InvalidInput, match="cannot be fine-tuned") as caught:
        method_for(entry("onnx", "tensor").spec, b"{}")
    assert caught.value.param == "model"


def test_auto_hyperparameters_take_the_method_defaults():
    method = EmbeddingsMethod()
    resolved = hyperparameters(method, {"n_epochs": 3, "batch_size": "auto"})
    assert resolved == {"n_epochs": 3, "batch_size": 16, "learning_rate_multiplier": 1.0}
