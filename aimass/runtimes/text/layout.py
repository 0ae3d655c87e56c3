"""What a local Hugging Face model directory holds and how its outputs become answers.

Read once at load time, without importing torch, so the ONNX path and the optimizer share it:

* a sentence-transformers directory (``modules.json``): the transformer's sub-folder, its
  ``max_seq_length``, the pooling mode from the Pooling module and whether a Normalize
  module follows;
* a plain encoder: pooling and normalization come from the spec's options
  (``pooling: mean|cls|max|last|mean_sqrt_len``, ``normalize: true|false``);
* a cross-encoder (task ``rerank``) or a sequence classifier (task ``text-classification``):
  the labels and how logits turn into scores.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimass.errors import InvalidInput
from aimass.spec import ModelSpec

POOLING_MODES = ("mean", "cls", "max", "last", "mean_sqrt_len")
KIND_BY_TASK = {
    "embedding": "encoder",
    "rerank": "cross-encoder",
    "text-classification": "classifier",
}
_ST_POOLING_KEYS = {
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_lasttoken": "last",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}
_ST_TRANSFORMER = "sentence_transformers.models.Transformer"
_ST_POOLING = "sentence_transformers.models.Pooling"
_ST_NORMALIZE = "sentence_transformers.models.Normalize"
_UNBOUNDED = 100_000


@dataclass(frozen=True)
class TextLayout:
    """Everything the runtime needs to know about a model directory besides its weights."""

    kind: str
    """``encoder`` (embeddings), ``cross-encoder`` (rerank) or ``classifier``."""
    model_dir: Path
    """Folder with ``config.json``, the weights and the tokenizer."""
    max_length: int
    """Most tokens per row, special tokens included."""
    pooling: str = "mean"
    normalize: bool = True
    labels: list[str] = field(default_factory=list)
    activation: str = "none"
    """How logits become scores: ``sigmoid``, ``softmax`` or ``none``."""
    sentence_transformers: bool = False
    dimensions: int = 0
    """Width of an embedding (hidden size); 0 for scorers."""


def read_layout(spec: ModelSpec) -> TextLayout:
    """Inspect ``spec.source`` and the spec's options; raise ``InvalidInput`` naming the problem."""
    root = Path(spec.source)
    if not root.is_dir():
        raise InvalidInput(f"model {spec.name!r}: source {root} is not a directory", param="source")
    kind = KIND_BY_TASK.get(spec.task)
    if kind is None:
        tasks = ", ".join(KIND_BY_TASK)
        raise InvalidInput(
            f"runtime 'transformers' serves tasks {tasks}; got task {spec.task!r}", param="task"
        )
    if kind == "encoder":
        return _encoder_layout(spec, root)
    return _scorer_layout(spec, root, kind)


def _encoder_layout(spec: ModelSpec, root: Path) -> TextLayout:
    modules_file = root / "modules.json"
    if modules_file.exists():
        model_dir, pooling, normalize, st_max = _read_sentence_transformers(root, modules_file)
    else:
        model_dir, pooling, normalize, st_max = root, "mean", True, None
    pooling = str(spec.options.get("pooling", pooling))
    if pooling not in POOLING_MODES:
        raise InvalidInput(
            f"options.pooling {pooling!r} is not one of: {', '.join(POOLING_MODES)}",
            param="options.pooling",
        )
    normalize = bool(spec.options.get("normalize", normalize))
    config = _read_config(model_dir)
    return TextLayout(
        kind="encoder",
        model_dir=model_dir,
        max_length=_max_length(spec, model_dir, config, st_max),
        pooling=pooling,
        normalize=normalize,
        sentence_transformers=modules_file.exists(),
        dimensions=int(config.get("hidden_size") or config.get("d_model") or 0),
    )


def _scorer_layout(spec: ModelSpec, root: Path, kind: str) -> TextLayout:
    config = _read_config(root)
    id2label = config.get("id2label") or {"0": "LABEL_0"}
    labels = [str(id2label[k]) for k in sorted(id2label, key=int)]
    if kind == "cross-encoder":
        activation = "sigmoid" if len(labels) == 1 else "softmax"
    else:
        multi = config.get("problem_type") == "multi_label_classification"
        activation = "sigmoid" if multi or len(labels) == 1 else "softmax"
    activation = str(spec.options.get("activation", activation))
    if activation not in ("sigmoid", "softmax", "none"):
        raise InvalidInput(
            f"options.activation {activation!r} is not one of: sigmoid, softmax, none",
            param="options.activation",
        )
    return TextLayout(
        kind=kind,
        model_dir=root,
        max_length=_max_length(spec, root, config, None),
        labels=labels,
        activation=activation,
    )


def _read_sentence_transformers(
    root: Path, modules_file: Path
) -> tuple[Path, str, bool, int | None]:
    """Transformer folder, pooling mode, normalize flag and max_seq_length of an ST model."""
    modules = json.loads(modules_file.read_text())
    model_dir, pooling, normalize, st_max = root, "mean", False, None
    for module in modules:
        kind, path = module.get("type", ""), root / module.get("path", "")
        if kind == _ST_TRANSFORMER:
            model_dir = path
            st_max = _read_json(path / "sentence_bert_config.json").get("max_seq_length")
        elif kind == _ST_POOLING:
            pooling = _read_st_pooling(path / "config.json")
        elif kind == _ST_NORMALIZE:
            normalize = True
        else:
            raise InvalidInput(
                f"{modules_file}: sentence-transformers module {kind!r} is not supported "
                "(supported: Transformer, Pooling, Normalize)"
            )
    return model_dir, pooling, normalize, st_max


def _read_st_pooling(config_file: Path) -> str:
    config = _read_json(config_file)
    modes = [mode for key, mode in _ST_POOLING_KEYS.items() if config.get(key)]
    if len(modes) != 1:
        raise InvalidInput(
            f"{config_file}: exactly one supported pooling mode must be set, "
            f"found {modes or 'none'}"
        )
    return modes[0]


def _max_length(spec: ModelSpec, model_dir: Path, config: dict, st_max: int | None) -> int:
    """The row limit: options.max_length, else the model's own, never past its positions."""
    positions = int(config.get("max_position_embeddings") or _UNBOUNDED)
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2  # these reserve the padding index and one more position
    wanted = spec.options.get("max_length") or st_max or _tokenizer_max(model_dir) or positions
    length = min(int(wanted), positions)
    if length < 2:
        raise InvalidInput(f"options.max_length must be at least 2, got {length}")
    return length


def _tokenizer_max(model_dir: Path) -> int | None:
    value = _read_json(model_dir / "tokenizer_config.json").get("model_max_length")
    return int(value) if isinstance(value, int | float) and value < _UNBOUNDED else None


def _read_config(model_dir: Path) -> dict[str, Any]:
    if not (model_dir / "config.json").exists():
        raise InvalidInput(f"{model_dir} has no config.json; is it a Hugging Face model folder?")
    return _read_json(model_dir / "config.json")


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}
