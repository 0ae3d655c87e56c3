"""The built-in all-MiniLM-L6-v2 (fp32 and its gated int8 version) and the optimize command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from aimass.provision import builtin, optimize
from aimass.registry import models as registry
from aimass.spec import ModelSpec
from tests.conftest import ROOT, run_server
from tests.factories_text import tiny_encoder

TEXTS = [
    "A man is eating food.",
    "How do I reset my password?",
    "Le chat dort sur le canapé.",
    "Quarterly revenue rose 12% to $4.3 billion.",
]


@pytest.fixture(scope="module")
def minilm(tmp_path_factory) -> tuple[Path, list[ModelSpec]]:
    home = tmp_path_factory.mktemp("home")
    return home, builtin.minilm_specs(home)


def test_minilm_int8_passes_the_gate_and_is_cached(minilm, monkeypatch):
    home, specs = minilm
    assert [s.version for s in specs] == [1, 2]
    fp32, int8 = specs
    assert "onnx" not in fp32.options and int8.options["onnx"].endswith("model_int8.onnx")
    gate = optimize.read_gate(builtin.minilm_int8_dir(home))
    assert gate.passed and gate.mean_cosine >= 0.99 and gate.min_cosine >= 0.98
    monkeypatch.setattr(optimize, "build_int8", lambda *a: pytest.fail("gate ran again"))
    assert builtin.minilm_specs(home) == specs


def test_server_output_equals_the_reference_model(minilm, tmp_path):
    from sentence_transformers import SentenceTransformer

    _, (fp32, int8) = minilm
    reference = SentenceTransformer(fp32.source, device="cpu").encode(TEXTS)
    with run_server(tmp_path, models=[fp32, int8]) as base_url:
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)
        served = {
            version: np.array(
                [
                    d.embedding
                    for d in client.embeddings.create(
                        model=f"{builtin.MINILM}:{version}", input=TEXTS
                    ).data
                ]
            )
            for version in (1, 2)
        }
        newest = client.embeddings.create(model=builtin.MINILM, input=TEXTS[0])
        # 100 inputs: 64-row batches whose results (98 KB) exceed the worker pipe's buffer.
        many = client.embeddings.create(model=f"{builtin.MINILM}:2", input=TEXTS * 25)
    assert served[1].shape == (4, 384) and len(many.data) == 100
    assert optimize.cosines(served[1], reference).min() >= 0.9999
    int8_cos = optimize.cosines(served[2], reference)
    assert int8_cos.mean() >= optimize.MEAN_COSINE_MIN and int8_cos.min() >= optimize.MIN_COSINE_MIN
    # No version named: the newest ready one (int8) serves; alone, the sentence gets the very
    # vector it got inside the batch (activations are quantized per row, not per batch).
    assert newest.data[0].embedding == many.data[0].embedding == served[2][0].tolist()


def test_int8_vectors_do_not_depend_on_what_shares_their_batch(minilm, tmp_path):
    """Each text alone, in requests of 7 and 32 mixed-length texts, and as 32 concurrent
    one-text requests that the dynamic batcher merges: the same vector every time."""
    _, (_, int8) = minilm
    texts = list(optimize.GATE_SENTENCES[:24] + optimize.SHORT_INPUTS)
    name = f"{builtin.MINILM}:2"
    with run_server(tmp_path, models=[int8]) as base_url:
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key="unused", max_retries=0)

        def embed(inputs: list[str]) -> list[list[float]]:
            return [d.embedding for d in client.embeddings.create(model=name, input=inputs).data]

        alone = np.array([embed([t])[0] for t in texts])
        batches = {
            size: np.array(
                [v for i in range(0, len(texts), size) for v in embed(texts[i : i + size])]
            )
            for size in (7, 32)
        }
        before = _batches(base_url)
        with ThreadPoolExecutor(len(texts)) as pool:
            concurrent = np.array([v[0] for v in pool.map(lambda t: embed([t]), texts)])
        merged = _batches(base_url) - before
    assert merged < len(texts)  # the batcher did put several requests in one batch
    for vectors in (*batches.values(), concurrent):
        assert optimize.cosines(alone, vectors).min() >= 0.9999
        assert np.abs(alone - vectors).max() <= 1e-6


def _batches(base_url: str) -> float:
    """Batches the int8 version computed so far (``aimass_batch_size_count``)."""
    text = httpx.get(f"{base_url}/metrics").text
    found = re.search(
        rf'^aimass_batch_size_count\{{model="{builtin.MINILM}",version="2"\}} (\S+)$', text, re.M
    )
    return float(found.group(1)) if found else 0.0


def test_cli_optimize_registers_the_variant(tmp_path):
    home = tmp_path / "home"
    url = f"sqlite:///{home / 'aimass.db'}"
    spec = ModelSpec(
        name="tiny",
        task="embedding",
        runtime="transformers",
        source=str(tiny_encoder(tmp_path / "tiny")),
    )
    registry.add_model(url, spec)
    env = {**os.environ, "AIMASS_HOME": str(home)}
    command = [sys.executable, "-m", "aimass", "models", "optimize", "tiny"]
    refused = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode != 0 and "--int8" in refused.stderr
    done = subprocess.run([*command, "--int8"], env=env, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "version 2 registered" in done.stdout and "mean cosine" in done.stdout
    assert registry.get_model(url, "tiny", 2).notes["quality_gate"]["passed"] is True
