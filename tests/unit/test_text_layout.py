"""Reading model folders: sentence-transformers files, plain encoders, scorers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aimass.errors import InvalidInput
from aimass.runtimes.text.layout import read_layout
from aimass.spec import ModelSpec
from tests.factories_text import tiny_classifier, tiny_encoder


def _spec(path: Path, task: str = "embedding", **options) -> ModelSpec:
    return ModelSpec(name="m", task=task, runtime="transformers", source=str(path), options=options)


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("st"), max_length=24, pooling="cls")


@pytest.fixture(scope="module")
def plain_dir(tmp_path_factory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("plain"), sentence_transformers=False)


def test_sentence_transformers_layout_is_read(st_dir):
    layout = read_layout(_spec(st_dir))
    assert (layout.kind, layout.pooling, layout.normalize) == ("encoder", "cls", True)
    assert layout.sentence_transformers and layout.max_length == 24 and layout.dimensions == 32


def test_options_override_pooling_normalization_and_length(st_dir):
    layout = read_layout(_spec(st_dir, pooling="max", normalize=False, max_length=10))
    assert (layout.pooling, layout.normalize, layout.max_length) == ("max", False, 10)


def test_max_length_never_exceeds_position_embeddings(plain_dir):
    assert read_layout(_spec(plain_dir, max_length=5000)).max_length == 64


def test_plain_encoder_defaults(plain_dir):
    layout = read_layout(_spec(plain_dir))
    assert (layout.pooling, layout.normalize, layout.max_length) == ("mean", True, 32)
    assert not layout.sentence_transformers


def test_unknown_pooling_is_refused(plain_dir):
    with pytest.raises(InvalidInput, match=r"options\.pooling"):
        read_layout(_spec(plain_dir, pooling="median"))


def test_unsupported_sentence_transformers_module_is_named(tmp_path):
    path = tiny_encoder(tmp_path)
    modules = json.loads((path / "modules.json").read_text())
    modules.append(
        {"idx": 3, "name": "3", "path": "3_Dense", "type": "sentence_transformers.models.Dense"}
    )
    (path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(InvalidInput, match=r"models\.Dense"):
        read_layout(_spec(path))


def test_scorer_labels_and_activation(tmp_path):
    cross = read_layout(_spec(tiny_classifier(tmp_path / "c"), task="rerank"))
    assert (cross.kind, cross.labels, cross.activation) == (
        "cross-encoder",
        ["relevance"],
        "sigmoid",
    )
    clf_dir = tiny_classifier(tmp_path / "k", labels=["neg", "neu", "pos"])
    clf = read_layout(_spec(clf_dir, task="text-classification"))
    assert (clf.kind, clf.labels, clf.activation) == (
        "classifier",
        ["neg", "neu", "pos"],
        "softmax",
    )


def test_missing_folder_and_wrong_task_are_refused(tmp_path, plain_dir):
    with pytest.raises(InvalidInput, match="not a directory"):
        read_layout(_spec(tmp_path / "nope"))
    with pytest.raises(InvalidInput, match="task"):
        read_layout(_spec(plain_dir, task="regression"))
