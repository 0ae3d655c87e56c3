"""The int8 path: export, quantize, the quality gate, and registering a passing variant."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from aimass.errors import InvalidInput, Unprocessable
from aimass.provision import optimize
from aimass.registry import models as registry
from aimass.runtimes import create_runtime
from aimass.runtimes.base import ROW_ERRORS
from aimass.runtimes.text.batching import pad_rows
from aimass.runtimes.text.pooling import normalize, pool
from aimass.spec import ModelSpec
from tests.factories_text import SENTENCES, tiny_classifier, tiny_encoder


@pytest.fixture(scope="module")
def st_dir(tmp_path_factory) -> Path:
    return tiny_encoder(tmp_path_factory.mktemp("st"), max_length=32)


def _spec(path: Path, **update) -> ModelSpec:
    data = {"name": "tiny", "task": "embedding", "runtime": "transformers", "source": str(path)}
    return ModelSpec(**{**data, **update})


def _embed(spec: ModelSpec, texts: list[str]) -> np.ndarray:
    runtime = create_runtime(spec)
    runtime.load()
    batch = np.empty(len(texts), dtype=object)
    batch[:] = texts
    return runtime.infer({"text": batch})["embedding"]


def test_judge_thresholds():
    good = optimize.judge(np.array([0.996, 0.995, 0.985]), np.array([0.9]))
    assert good.passed and good.short_min_cosine == 0.9
    assert not optimize.judge(np.array([0.999, 0.97])).passed  # worst below 0.98
    assert not optimize.judge(np.array([0.985, 0.985])).passed  # mean below 0.99
    assert "mean cosine 0.9850 (needs ≥ 0.99)" in optimize.judge(np.array([0.985])).describe()


def test_build_int8_gates_and_serves_through_the_same_runtime(st_dir, tmp_path):
    int8, gate = optimize.build_int8(_spec(st_dir), tmp_path / "out")
    assert gate.passed and gate.sentences == len(optimize.GATE_SENTENCES)
    assert gate.short_mean_cosine is not None
    assert optimize.read_gate(tmp_path / "out") == gate
    variant = optimize.int8_spec(_spec(st_dir), int8, 2, gate)
    assert variant.options["onnx"] == str(int8.resolve()) and "int8" in variant.description
    fp32 = _embed(_spec(st_dir), SENTENCES)
    served = _embed(variant, SENTENCES)
    cos = optimize.cosines(fp32, served)
    assert cos.mean() >= optimize.MEAN_COSINE_MIN and cos.min() >= optimize.MIN_COSINE_MIN


def test_optimize_registers_a_new_version_with_its_figures(st_dir, tmp_path):
    url = f"sqlite:///{tmp_path / 'aimass.db'}"
    registry.add_model(url, _spec(st_dir), load=True)
    entry = optimize.optimize_model(url, tmp_path, "tiny")
    assert entry.spec.version == 2 and entry.desired == "unloaded"  # the user picks what serves
    assert entry.notes["optimized_from"] == 1
    assert entry.notes["quality_gate"]["passed"] is True
    assert Path(entry.spec.options["onnx"]).exists()
    assert registry.get_model(url, "tiny", 1).desired == "loaded"
    with pytest.raises(InvalidInput, match="not an fp32"):
        optimize.optimize_model(url, tmp_path, "tiny", 2)


def test_a_variant_below_the_gate_is_refused_with_its_figures(st_dir, tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'aimass.db'}"
    registry.add_model(url, _spec(st_dir))
    monkeypatch.setattr(optimize, "MEAN_COSINE_MIN", 1.01)
    with pytest.raises(Unprocessable, match=r"refused: mean cosine \d\.\d{4} \(needs ≥ 1.01\)"):
        optimize.optimize_model(url, tmp_path, "tiny")
    assert [e.spec.version for e in registry.list_models(url, "tiny")] == [1]
    assert not (tmp_path / "models" / "tiny" / "v2-int8").exists()


def test_only_embedding_models_can_be_quantized(tmp_path):
    spec = _spec(tiny_classifier(tmp_path / "c"), task="rerank")
    with pytest.raises(InvalidInput, match="embedding models"):
        optimize.build_int8(spec, tmp_path / "out")


def test_gate_file_needs_its_onnx_file(tmp_path):
    (tmp_path / optimize.GATE_FILE).write_text(json.dumps({"mean_cosine": 1}))
    assert optimize.read_gate(tmp_path) is None


def test_int8_rows_do_not_depend_on_their_batch_or_padding(st_dir, tmp_path):
    """The same text gives the same bits alone, in batches of 1, 7 and 32 of mixed lengths,
    and padded to the model's limit (activations are quantized per row, not per batch)."""
    int8, _ = optimize.build_int8(_spec(st_dir), tmp_path / "out")
    runtime = create_runtime(
        optimize.int8_spec(_spec(st_dir), int8, 2, optimize.GateResult(1, 1, 1, True))
    )
    runtime.load()
    texts = [SENTENCES[i % len(SENTENCES)] + " dogs" * (i % 3) for i in range(32)]

    def embed(rows: list[str]) -> np.ndarray:
        batch = np.empty(len(rows), dtype=object)
        batch[:] = rows
        out = runtime.infer({"text": batch})
        assert ROW_ERRORS not in out
        return out["embedding"]

    alone = np.concatenate([embed([t]) for t in texts])
    for size in (7, 32):
        batched = np.concatenate([embed(texts[i : i + size]) for i in range(0, 32, size)])
        np.testing.assert_array_equal(batched, alone)
    pipeline = runtime.pipeline
    rows = pipeline.tokenizer.encode_texts(texts, [False] * len(texts))
    feeds = pad_rows(rows.ids, rows.type_ids, pipeline.tokenizer.pad_id)
    width = pipeline.layout.max_length - feeds["input_ids"].shape[1]
    pad_id = pipeline.tokenizer.pad_id
    padded = {
        name: np.pad(value, ((0, 0), (0, width)), constant_values=pad_id * (name == "input_ids"))
        for name, value in feeds.items()
    }
    hidden = pipeline.backend.run(padded)
    np.testing.assert_array_equal(normalize(pool(hidden, padded["attention_mask"], "mean")), alone)


def test_a_variant_of_an_earlier_recipe_is_built_again(tmp_path):
    (tmp_path / optimize.INT8_FILE).write_bytes(b"per-batch int8")
    earlier = {**asdict(optimize.GateResult(0.99, 0.98, 38, True)), "method": "per-batch"}
    (tmp_path / optimize.GATE_FILE).write_text(json.dumps(earlier))
    assert optimize.read_gate(tmp_path) is None
    current = asdict(optimize.GateResult(0.99, 0.98, 38, True))
    (tmp_path / optimize.GATE_FILE).write_text(json.dumps(current))
    assert optimize.read_gate(tmp_path) == optimize.GateResult(0.99, 0.98, 38, True)
