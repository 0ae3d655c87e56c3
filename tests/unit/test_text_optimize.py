"""The int8 path: export, quantize, the quality gate, and registering a passing variant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from aimass.errors import InvalidInput, Unprocessable
from aimass.provision import optimize
from aimass.registry import models as registry
from aimass.runtimes import create_runtime
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
