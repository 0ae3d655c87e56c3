"""``aimass models optimize NAME --int8``: a faster variant that must prove it is the same model.

Export the fp32 model to ONNX, quantize it to int8 (``runtimes.text.quantize``: activations
per row, so a text's vector does not depend on its batch), then run both through the same
tokenizer and pooling on a fixed, varied sentence set and compare the embeddings. The
variant passes when the mean cosine is at least ``MEAN_COSINE_MIN`` and the worst one at
least ``MIN_COSINE_MIN``; otherwise it is refused with the figures. A passing
variant is registered as a new version of the model (same tokenizer folder, ``options.onnx``
naming the int8 file) with the figures in its notes; which version serves stays the user's
choice (``aimass models load NAME --version V``).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from aimass.errors import InvalidInput, Unprocessable
from aimass.provision.artifacts import version_dir
from aimass.runtimes.text.quantize import RECIPE
from aimass.spec import ModelSpec

if TYPE_CHECKING:
    from aimass.runtimes.text.layout import TextLayout

MEAN_COSINE_MIN = 0.99
MIN_COSINE_MIN = 0.98
INT8_FILE = "model_int8.onnx"
GATE_FILE = "gate.json"

log = logging.getLogger("aimass.provision")

# Short and long, questions and lists, code, numbers, several languages and scripts: the
# kinds of sentences an embedding model meets, so that one weak spot cannot hide in the mean.
# The thresholds were set for sentences (see docs/embeddings.md).
GATE_SENTENCES = (
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "The new movie is awesome!",
    "How do I reset my password if I no longer have access to my email?",
    "Quarterly revenue rose 12% to $4.3 billion, beating analyst estimates.",
    "def add(a, b):\n    return a + b",
    "SELECT name, email FROM users WHERE created_at > '2024-01-01' ORDER BY name;",
    "The mitochondria is the powerhouse of the cell.",
    "Paris is the capital and most populous city of France.",
    "Ignore the noise; focus on the signal.",
    "I can't believe it's not butter!!!",
    "The patient presented with acute abdominal pain and a fever of 39.2°C.",
    "Le chat dort sur le canapé depuis ce matin.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "El tren de alta velocidad llega a Madrid en dos horas.",
    "今日はとても良い天気ですね。",
    "人工智能大模型即服务",
    "Привет, как у тебя дела?",
    "404 Not Found",
    "1, 2, 3, 5, 8, 13, 21, 34, 55, 89",
    "E = mc^2 relates energy and mass.",
    "Please schedule the meeting for next Tuesday at 3 pm in room 4B.",
    "The court ruled that the contract was void because one party lacked capacity.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Best budget noise-cancelling headphones under 100 dollars",
    "My flight was delayed for six hours and nobody told us why.",
    "Machine learning models can overfit when the training set is small.",
    "Gradient descent updates parameters in the direction that reduces the loss.",
    "She sells sea shells by the sea shore.",
    "The stock market crashed in 1929, leading to the Great Depression.",
    "Water boils at 100 degrees Celsius at sea level.",
    "Can you recommend a good science fiction novel?",
    "The weather forecast predicts heavy rain and strong winds tomorrow afternoon.",
    "To be, or not to be, that is the question.",
    "Kubernetes schedules containers onto nodes according to resource requests.",
    "The quick brown fox jumps over the lazy dog. " * 6,
    "A very long review: the hotel was clean, the staff were friendly, breakfast was varied "
    "and fresh, the location was perfect for walking to the old town, and although the room "
    "was a little small and the street could be noisy at night, we would happily stay again.",
    "#hashtag @mention https://example.com/path?query=1 :-)",
)

# One- and two-word inputs drift most under int8 (a handful of tokens, mean-pooled). They
# are measured and reported next to the gate's figures, but do not decide it.
SHORT_INPUTS = (
    "ok",
    "Thanks!",
    "weather",
    "cheap flights",
    "password reset",
    "hello",
    "GPU",
    "why?",
)


@dataclass(frozen=True)
class GateResult:
    """How close the variant's embeddings are to the fp32 model's on ``GATE_SENTENCES``."""

    mean_cosine: float
    min_cosine: float
    sentences: int
    passed: bool
    short_mean_cosine: float | None = None
    """Mean cosine over ``SHORT_INPUTS``: reported, not gated."""
    short_min_cosine: float | None = None
    mean_required: float = MEAN_COSINE_MIN
    min_required: float = MIN_COSINE_MIN
    method: str = RECIPE
    """The quantization recipe measured; a cached variant of another recipe is rebuilt."""

    def describe(self) -> str:
        verdict = "passed" if self.passed else "refused"
        text = (
            f"int8 variant {verdict}: mean cosine {self.mean_cosine:.4f} (needs ≥ "
            f"{self.mean_required}), min cosine {self.min_cosine:.4f} (needs ≥ "
            f"{self.min_required}) over {self.sentences} sentences"
        )
        if self.short_mean_cosine is not None:
            text += (
                f"; one- and two-word inputs (not gated): mean {self.short_mean_cosine:.4f}, "
                f"min {self.short_min_cosine:.4f}"
            )
        return text


def cosines(reference: np.ndarray, variant: np.ndarray) -> np.ndarray:
    """Row-by-row cosine similarity of two embedding matrices."""
    ref = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    var = variant / np.maximum(np.linalg.norm(variant, axis=1, keepdims=True), 1e-12)
    return (ref * var).sum(axis=1)


def judge(gated: np.ndarray, short: np.ndarray | None = None) -> GateResult:
    """The verdict from the gated cosines (and the reported short-input ones)."""
    mean, low = float(gated.mean()), float(gated.min())
    passed = mean >= MEAN_COSINE_MIN and low >= MIN_COSINE_MIN
    extra = {}
    if short is not None and len(short):
        extra = {
            "short_mean_cosine": round(float(short.mean()), 6),
            "short_min_cosine": round(float(short.min()), 6),
        }
    return GateResult(
        round(mean, 6),
        round(low, 6),
        len(gated),
        passed,
        mean_required=MEAN_COSINE_MIN,
        min_required=MIN_COSINE_MIN,
        **extra,
    )


def build_int8(spec: ModelSpec, out_dir: Path) -> tuple[Path, GateResult]:
    """Export, quantize and gate ``spec``'s model into ``out_dir``; writes ``gate.json`` too.

    The int8 file is written whatever the verdict: the caller decides what to keep (the
    built-in model keeps a refusal's figures so the gate does not run on every start). Only
    a passing variant is ever registered, so only a passing one can serve.
    """
    from aimass.runtimes.text.export import export_onnx
    from aimass.runtimes.text.layout import read_layout
    from aimass.runtimes.text.quantize import quantize_int8

    layout = read_layout(spec)
    if layout.kind != "encoder":
        raise InvalidInput(
            f"model {spec.name!r}: --int8 is available for embedding models; task is {spec.task!r}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with _step(f"exporting {spec.name!r} to ONNX"):
        fp32 = export_onnx(layout, out_dir / "model_fp32.onnx")
    with _step("quantizing to int8"):
        int8 = quantize_int8(fp32, out_dir / INT8_FILE)
    fp32.unlink()
    with _step(f"quality gate ({len(GATE_SENTENCES)} sentences through both models)"):
        result = _gate(layout, int8, spec.threads)
    log.info("%s", result.describe())
    (out_dir / GATE_FILE).write_text(json.dumps(asdict(result), indent=2))
    return int8, result


def _gate(layout: TextLayout, int8: Path, threads: int) -> GateResult:
    """Both models on the same sentences, through the same tokenizer and pooling."""
    from aimass.runtimes.text.backends import OnnxBackend, TorchBackend
    from aimass.runtimes.text.runtime import TextPipeline

    reference = TextPipeline(layout, TorchBackend(layout, threads), None)
    variant = TextPipeline(layout, OnnxBackend(int8, threads), None)
    measured = [
        cosines(
            *(
                p.run_texts(list(texts), [True] * len(texts))["embedding"]
                for p in (reference, variant)
            )
        )
        for texts in (GATE_SENTENCES, SHORT_INPUTS)
    ]
    return judge(*measured)


@contextmanager
def _step(what: str) -> Iterator[None]:
    """Log a long step when it starts and when it ends, with its time."""
    started = time.monotonic()
    log.info("%s ...", what)
    yield
    log.info("%s: done in %.1f s", what, time.monotonic() - started)


def read_gate(out_dir: Path) -> GateResult | None:
    """The figures recorded by an earlier ``build_int8`` in ``out_dir`` with today's recipe.

    None when there are none, or when they were measured on a file another recipe made (such
    as the per-batch activation scales of earlier releases): that file is then built again.
    """
    path = out_dir / GATE_FILE
    if not path.exists() or not (out_dir / INT8_FILE).exists():
        return None
    try:
        gate = GateResult(**json.loads(path.read_text()))
    except (TypeError, ValueError):
        return None
    return gate if gate.method == RECIPE else None


def int8_spec(spec: ModelSpec, int8_file: Path, version: int, gate: GateResult) -> ModelSpec:
    """The new version: same folder and settings, served from the int8 ONNX file, with the
    sha256 of both recorded."""
    options = {**spec.options, "onnx": str(int8_file.resolve())}
    description = (
        f"int8 ONNX of version {spec.version} (mean cosine {gate.mean_cosine:.4f}, "
        f"min {gate.min_cosine:.4f})"
    )
    variant = spec.model_copy(
        update={"version": version, "options": options, "description": description}
    )
    return variant.model_copy(update={"sha256": variant.digests()})


def optimize_model(database_url: str, home: Path, name: str, version: int | None = None):
    """Build, gate and register the int8 variant of ``name`` (newest version by default).

    Returns the new registry entry; raises ``Unprocessable`` with the figures when refused.
    """
    from aimass.registry import models

    source = models.get_model(database_url, name, version).spec
    if source.runtime != "transformers" or source.options.get("onnx"):
        raise InvalidInput(
            f"model {name!r} version {source.version} is not an fp32 transformers model"
        )
    new_version = models.next_version(database_url, name)
    out_dir = version_dir(home, name, new_version)
    int8, gate = build_int8(source, out_dir)
    if not gate.passed:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise Unprocessable(f"model {name!r}: {gate.describe()}")
    notes = {"optimized_from": source.version, "quality_gate": asdict(gate)}
    return models.add_model(
        database_url, int8_spec(source, int8, new_version, gate), load=False, notes=notes
    )
