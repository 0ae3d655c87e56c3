"""What a model must pass before it is registered: one that can never load is an error at add
time, not a failed model later (and a ``/v2/health/ready`` that turns 503 for the whole server).

1. ``check_files`` (cheap, in this process, nothing executed): the source exists and is a file
   or a folder as the runtime reads it; its first bytes are the runtime's format (GGUF magic,
   ONNX's protobuf header, LightGBM's text header); a pickle only with ``trust_pickle``; the task
   is one the runtime serves and, where the file's header tells (LightGBM's objective), one the
   model can do.
2. ``trial_load``: the model loaded once in a throwaway worker process (a ``Replica`` started and
   stopped) within ``trial_load_timeout_s``, which runs the runtime's own checks: a task against
   the model's outputs, the options, the whole file.

HTTP-free: ``provision.registration`` runs both for every way in (``aimass models add``,
``aimass serve --config``, ``POST /v1/admin/models``, the v2 load with a config).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from aimass.errors import InvalidInput, Unavailable, Unprocessable
from aimass.spec import ModelSpec

_KINDS = {
    "gguf": "a GGUF file (an LLM: runtime llamacpp, task text-generation)",
    "onnx": "an ONNX model",
    "lightgbm": "a LightGBM text model (runtime tabular)",
    "pickle": "a Python pickle (runtime tabular, only with trust_pickle)",
    "zip": "a zip archive (a PyTorch checkpoint or a compressed file, not a servable model)",
}
_TABULAR_TASKS = ("classification", "regression", "tensor")
_ONNX_TASKS = ("tensor", "classification", "regression")
_LIGHTGBM_CLASSIFIERS = ("binary", "multiclass", "multiclassova")
_ERROR_PREFIX = re.compile(r"^(InvalidInput|Unprocessable): ")


def sniff(path: Path) -> str | None:
    """The format a file's first bytes show, or None when they show none we know."""
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(b"GGUF"):
        return "gguf"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x80"):  # pickle protocol 2 and later
        return "pickle"
    if head.startswith((b"tree\n", b"tree\r\n")):
        return "lightgbm"
    if head.startswith(b"\x08"):  # ModelProto's first field, ir_version, as onnx writes it
        return "onnx"
    return None


def check_files(spec: ModelSpec) -> None:
    """Refuse, naming the problem, a spec whose files cannot be what its runtime reads."""
    source = Path(spec.source)
    if not source.exists():
        raise InvalidInput(f"model {spec.name!r}: source {source} does not exist", param="source")
    if spec.runtime == "transformers":
        _check_folder(spec, source)
        return
    if spec.runtime in ("ocr", "asr"):
        _check_media_folder(spec, source)
        return
    if spec.runtime in SCENARIO_ARTIFACTS:
        _check_scenario_folder(spec, source)
        return
    if not source.is_file():
        raise InvalidInput(
            f"model {spec.name!r}: source {source} is a folder; runtime {spec.runtime!r} "
            "reads one model file",
            param="source",
        )
    checks = {
        "onnx": _check_onnx,
        "llamacpp": _check_gguf,
        "tabular": _check_tabular,
        "vision": _check_vision,
    }
    checks[spec.runtime](spec, source)


SCENARIO_ARTIFACTS = {
    "recommend": ("factors.npz", "model.json"),
    "forecast": ("forecaster.pkl",),
    "risk": ("risk.json",),
}
"""The files a trained scenario artifact folder holds (written by its training job)."""


def _check_scenario_folder(spec: ModelSpec, source: Path) -> None:
    missing = [name for name in SCENARIO_ARTIFACTS[spec.runtime] if not (source / name).is_file()]
    if missing:
        raise InvalidInput(
            f"model {spec.name!r}: source {source} must be a folder a {spec.runtime} training "
            f"job wrote; it lacks {', '.join(missing)}",
            param="source",
        )
    if spec.runtime == "forecast" and not spec.trust_pickle:
        raise InvalidInput(
            f"model {spec.name!r}: a forecaster artifact is a pickle; set trust_pickle only "
            "for one this server's training job wrote",
            param="trust_pickle",
        )


def _check_onnx(spec: ModelSpec, source: Path) -> None:
    if spec.task not in _ONNX_TASKS:
        raise InvalidInput(
            f"model {spec.name!r}: runtime 'onnx' serves tensors (tasks {', '.join(_ONNX_TASKS)}),"
            f" not task {spec.task!r}; text models are served by runtime 'transformers' "
            "(options.onnx serves an exported ONNX graph of them)",
            param="task",
        )
    _expect(spec, source, "onnx", "an ONNX model")


def _check_vision(spec: ModelSpec, source: Path) -> None:
    from aimass.runtimes.vision.options import read_labels, read_options  # pydantic only

    _expect(spec, source, "onnx", "an ONNX model")
    read_labels(spec, read_options(spec))


def _check_media_folder(spec: ModelSpec, source: Path) -> None:
    """An OCR folder (det/rec/cls ONNX files) or a CTranslate2 Whisper folder; file names
    only, no engine imported."""
    from aimass.runtimes.audio.layout import check_whisper_folder
    from aimass.runtimes.ocr.layout import ocr_files

    try:
        if spec.runtime == "ocr":
            ocr_files(source)
        else:
            check_whisper_folder(source)
    except InvalidInput as exc:
        raise InvalidInput(f"model {spec.name!r}: {exc.message}", param="source") from None


def _check_gguf(spec: ModelSpec, source: Path) -> None:
    _expect(spec, source, "gguf", "a GGUF file")


def _check_tabular(spec: ModelSpec, source: Path) -> None:
    from aimass.runtimes.tabular import resolve_format  # numpy only: no engine is imported

    if spec.task not in _TABULAR_TASKS:
        raise InvalidInput(
            f"model {spec.name!r}: runtime 'tabular' serves tasks classification and "
            f"regression, not {spec.task!r}",
            param="task",
        )
    fmt = resolve_format(spec)  # refuses an untrusted pickle and an unknown suffix
    if fmt == "lightgbm":
        _expect(spec, source, "lightgbm", "a LightGBM text model")
        _check_lightgbm_task(spec, source)
    elif fmt == "onnx":
        _expect(spec, source, "onnx", "an ONNX model")


def _expect(spec: ModelSpec, source: Path, kind: str, wanted: str) -> None:
    found = sniff(source)
    if found == kind:
        return
    what = _KINDS.get(found or "", "not a format AI Mass serves")
    how = f"runtime {spec.runtime!r}"
    if "format" in spec.options:
        how += f", options.format {spec.options['format']!r}"
    raise InvalidInput(
        f"model {spec.name!r}: {source} is {what}, not {wanted} ({how})", param="runtime"
    )


def _check_lightgbm_task(spec: ModelSpec, source: Path) -> None:
    """LightGBM writes its objective in the header: a regressor cannot be a classifier."""
    objective = _lightgbm_objective(source)
    if objective is None or spec.task == "tensor":
        return
    found = "classification" if objective in _LIGHTGBM_CLASSIFIERS else "regression"
    if found != spec.task:
        raise InvalidInput(
            f"model {spec.name!r}: task {spec.task!r} does not fit {source}, a {found} model "
            f"(LightGBM objective {objective!r}); register it with task {found}",
            param="task",
        )


def _lightgbm_objective(path: Path) -> str | None:
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("objective="):
                return line.split("=", 1)[1].split()[0]
            if line.startswith("Tree="):
                return None
    return None


def _check_folder(spec: ModelSpec, source: Path) -> None:
    from aimass.runtimes.text.layout import read_layout  # JSON files only: no torch

    if not source.is_dir():
        raise InvalidInput(
            f"model {spec.name!r}: runtime 'transformers' reads a model folder (config.json, "
            f"weights, tokenizer); {source} is a file",
            param="source",
        )
    read_layout(spec)  # the task, the folder's config, pooling and activation options
    onnx = spec.options.get("onnx")
    if onnx is not None:
        path = Path(str(onnx))
        path = path if path.is_absolute() else source / path
        if not path.is_file():
            raise InvalidInput(
                f"model {spec.name!r}: ONNX file {path} does not exist", param="options.onnx"
            )
        _expect(spec, path, "onnx", "an ONNX model")


async def trial_load(spec: ModelSpec, timeout_s: float) -> dict[str, Any]:
    """Load the model once in a throwaway worker process, then stop it; returns what the
    worker reported (tensors, metadata). A failure is ``Unprocessable`` naming the reason."""
    from aimass.engine.local.replica import LocalReplica

    replica = LocalReplica(spec.model_copy(update={"replicas": 1, "sha256": {}}), 0)
    try:
        await replica.start(timeout_s)
    except Unavailable as exc:
        reason = _ERROR_PREFIX.sub(
            "", exc.message.removeprefix(f"{replica.label} failed to load: ")
        )
        if reason == "load timed out":
            reason = f"it did not load within {timeout_s:g} s (setting trial_load_timeout_s)"
        raise Unprocessable(
            f"model {spec.name!r} version {spec.version} cannot be loaded: {reason}"
        ) from None
    finally:
        await replica.stop()
    return replica.info
