"""The ModelSpec: everything needed to serve one version of one model.

Shared by every layer. Loaded from YAML (``ModelSpec.from_yaml``), from CLI flags, or from
the registry; an invalid spec is refused by pydantic with an error naming the field.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aimass.errors import InvalidInput, Unavailable
from aimass.refs import MAX_VERSION

Runtime = Literal[
    "onnx",
    "tabular",
    "llamacpp",
    "transformers",
    "ocr",
    "asr",
    "vision",
    "recommend",
    "forecast",
    "risk",
]
Task = Literal[
    "tensor",
    "classification",
    "regression",
    "text-generation",
    "embedding",
    "rerank",
    "text-classification",
    "ocr",
    "transcription",
    "recommendation",
    "forecasting",
]

GENERATIVE_TASKS = frozenset({"text-generation"})
VISION_TASKS = ("classification", "embedding")
RUNTIME_TASKS = {"ocr": "ocr", "asr": "transcription"}
"""Runtimes that serve one task only, one file per request: a spec naming no task gets that
one, and their requests are not batched (``max_batch_size`` 1)."""
SCENARIO_TASKS = {"recommend": "recommendation", "forecast": "forecasting"}
"""Runtimes of the scenario services (trained by a job), one task each; their rows batch."""
NAME_PATTERN = (
    r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,127}"
    r"|ft:[A-Za-z0-9][A-Za-z0-9._-]{0,127}:[A-Za-z0-9._-]{1,40}:[A-Za-z0-9_-]{1,64})$"
)
"""A model name; ``ft:<base>:<suffix>:<id>`` is the fine-tuned form (``refs.split_model``)."""
SOURCE_KEY = "source"
FILE_OPTIONS = ("onnx", "lora")
"""Options that name a file by absolute path outside ``source``: an exported ONNX graph
(transformers), a LoRA adapter GGUF (llamacpp). Names of the files in ``ModelSpec.sha256``:
``source``, ``source/<path in the folder>`` and ``options.<option>`` for these."""


class Batching(BaseModel):
    """How requests are merged before they reach a replica."""

    model_config = ConfigDict(extra="forbid")

    max_batch_size: int = Field(default=8, ge=1, le=65536)
    """Most rows in one batch (rows are counted, not requests). 1 turns batching off."""
    max_delay_ms: float = Field(default=0.0, ge=0, le=10_000)
    """Longest a request waits for others to fill its batch; 0 sends whatever is queued
    when a replica frees up (batches still form while replicas are busy)."""
    max_batch_tokens: int | None = Field(default=None, ge=1)
    """Token budget per batch for text models (padding counted); None: rows only."""
    online_replicas: int = Field(default=0, ge=0, le=64)
    """Replicas kept for online requests: while online requests come (one in the last
    second), a batch of background requests (vector store ingestion, batch jobs) starts only
    while this many other replicas stay free, so an online request does not wait for a
    background batch. No effect unless the model has more replicas than this."""


class Limits(BaseModel):
    """Admission limits: every queue is bounded and every request has a deadline."""

    model_config = ConfigDict(extra="forbid")

    max_queue: int = Field(default=256, ge=1, le=1_000_000)
    """Requests waiting for a batch (or, for LLMs, for a sequence slot); full → 429."""
    timeout_s: float = Field(default=30.0, gt=0, le=86_400)
    """Deadline of a request from arrival; expired requests never reach the model (504)."""
    max_concurrent: int = Field(default=0, ge=0)
    """LLMs: sequences decoded together per replica (0: runtime default)."""
    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1, le=1 << 30)
    """Image models: most bytes of one encoded image file (larger → 413 naming this limit)."""
    max_image_pixels: int = Field(default=40_000_000, ge=1, le=1 << 32)
    """Image models: most pixels (width × height) of one image, read from the file's header
    before decoding, so a decompression bomb is refused (413) without being decoded."""
    max_audio_bytes: int = Field(default=25 * 1024 * 1024, ge=1, le=1 << 30)
    """Speech models: most bytes of one audio file (larger → 413 naming this limit); 25 MiB
    is OpenAI's own limit for transcriptions."""
    max_audio_seconds: float = Field(default=600.0, gt=0, le=86_400)
    """Speech models: longest audio one request may send; decoding stops and answers 413
    naming this limit as soon as the decoded sound passes it."""


class Resources(BaseModel):
    """What one replica reserves on a Ray cluster (the local backend ignores it)."""

    model_config = ConfigDict(extra="forbid")

    num_cpus: float | None = Field(default=None, ge=0, le=1024)
    """CPUs Ray reserves for a replica; None: ``threads``."""
    memory_mb: int | None = Field(default=None, ge=1)
    """Memory Ray reserves for a replica (a scheduling reservation, not a cap); None: none."""
    num_gpus: float = Field(default=0, ge=0, le=64)
    """GPUs Ray reserves for a replica (and makes visible to it through CUDA_VISIBLE_DEVICES)."""
    placement: Literal["spread", "default"] = "spread"
    """``spread`` puts the replicas on different nodes where it can (Ray's SPREAD strategy);
    ``default`` lets Ray pack them (its DEFAULT strategy)."""


class Autoscaling(BaseModel):
    """Replicas follow the load between ``min_replicas`` and ``max_replicas`` (both backends).

    The load is the requests waiting and running (sequences, for generative models); the
    replicas wanted are ``ceil(load / target_ongoing_requests)``. A change happens only when
    every sample over the last ``upscale_delay_s`` (or ``downscale_delay_s``) wanted it, so a
    burst shorter than that moves nothing; a replica removed finishes what it was computing.
    """

    model_config = ConfigDict(extra="forbid")

    min_replicas: int = Field(default=1, ge=1, le=64)
    max_replicas: int = Field(default=4, ge=1, le=64)
    target_ongoing_requests: float = Field(default=2.0, gt=0, le=100_000)
    """Requests waiting or running per replica that the scaler aims at."""
    upscale_delay_s: float = Field(default=5.0, ge=0, le=3600)
    downscale_delay_s: float = Field(default=30.0, ge=0, le=86_400)

    @model_validator(mode="after")
    def _check(self) -> Autoscaling:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class ModelSpec(BaseModel):
    """One version of one model and how to serve it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(default=1, ge=1, le=MAX_VERSION)
    task: Task = "tensor"
    runtime: Runtime
    source: str = Field(min_length=1)
    """Local path of the model file or directory."""
    batching: Batching = Field(default_factory=Batching)
    limits: Limits = Field(default_factory=Limits)
    replicas: int = Field(default=1, ge=1, le=64)
    threads: int = Field(default=1, ge=1, le=256)
    """Intra-op threads per replica."""
    autoscaling: Autoscaling | None = None
    """None: always ``replicas``; else ``replicas`` is the count at load, within min..max."""
    resources: Resources = Field(default_factory=Resources)
    """What a replica reserves, and where it goes, on a Ray cluster (setting ``cluster``)."""
    trust_pickle: bool = False
    """Allow joblib/pickle model files, which run code when loaded."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Runtime-specific options (e.g. ``n_ctx`` for llamacpp, ``pooling`` for transformers)."""
    description: str = ""
    alias: str | None = Field(default=None, pattern=NAME_PATTERN)
    """Another name requests may call this version by: a fine-tuning job's
    ``ft:<base>:<suffix>:<job id>`` (OpenAI's ``fine_tuned_model``), which names one version."""
    sha256: dict[str, str] = Field(default_factory=dict)
    """sha256 of every file the version is served from, recorded at registration and checked
    at every load, so an edited or swapped file is refused instead of served: ``source`` (a
    file), ``source/<path>`` (each file of a folder), ``options.onnx`` (an ONNX file outside
    the folder), ``options.lora`` (a LoRA adapter). Empty: nothing recorded, nothing checked."""

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        scale = self.autoscaling
        if scale is not None and not scale.min_replicas <= self.replicas <= scale.max_replicas:
            raise ValueError(
                f"replicas ({self.replicas}) must be within autoscaling.min_replicas "
                f"({scale.min_replicas}) and autoscaling.max_replicas ({scale.max_replicas})"
            )
        if self.runtime == "llamacpp" and self.task != "text-generation":
            raise ValueError("runtime 'llamacpp' serves task 'text-generation' only")
        _check_lora(self)
        if self.runtime == "vision" and self.task not in VISION_TASKS:
            raise ValueError("runtime 'vision' serves tasks 'classification' and 'embedding'")
        only = RUNTIME_TASKS.get(self.runtime) or SCENARIO_TASKS.get(self.runtime)
        if only is not None and "task" not in self.model_fields_set:
            self.task = only
        if only is not None and self.task != only:
            raise ValueError(f"runtime {self.runtime!r} serves task {only!r} only")
        only = RUNTIME_TASKS.get(self.runtime)
        if only is not None and "batching" not in self.model_fields_set:
            self.batching = Batching(max_batch_size=1)
        if only is not None and self.batching.max_batch_size != 1:
            raise ValueError(
                f"runtime {self.runtime!r} reads one file at a time: batching.max_batch_size "
                "must be 1 (replicas set how many run at once)"
            )
        return self

    @property
    def generative(self) -> bool:
        return self.task in GENERATIVE_TASKS

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.version)

    def artifact_files(self) -> dict[str, Path]:
        """The files this version is served from, by the names ``sha256`` records them under."""
        root = Path(self.source)
        if root.is_dir():
            files = {
                f"{SOURCE_KEY}/{path.relative_to(root).as_posix()}": path
                for path in sorted(root.rglob("*"))
                if path.is_file()
            }
        else:
            files = {SOURCE_KEY: root}
        for option in FILE_OPTIONS:
            value = self.options.get(option)
            if (
                isinstance(value, str)
                and Path(value).is_absolute()
                and not Path(value).is_relative_to(root)
            ):
                files[f"options.{option}"] = Path(value)
        return files

    def digests(self) -> dict[str, str]:
        """sha256 of ``artifact_files`` as they are now (what registration records)."""
        return {key: file_sha256(path) for key, path in self.artifact_files().items()}

    def verify_files(self) -> None:
        """Refuse to serve files other than the registered ones (``sha256``), naming each
        changed, missing or added file with both digests; called before every load."""
        if not self.sha256:
            return
        files = self.artifact_files()
        problems = [
            problem
            for key, registered in self.sha256.items()
            if (problem := self._file_problem(files.get(key), key, registered))
        ]
        problems += [
            f"file {files[k]} was added" for k in sorted(files.keys() - self.sha256.keys())
        ]
        if problems:
            raise Unavailable(
                f"model {self.name!r} version {self.version}: "
                + "; ".join(problems[:3])
                + "; a version is served only with the files it was registered with: restore "
                "them, or register the new files (a new version, or an explicit replace)"
            )

    def _file_problem(self, path: Path | None, key: str, registered: str) -> str | None:
        if path is None or not path.is_file():
            return f"file {self._path_of(key)} is missing (registered with sha256 {registered})"
        try:
            now = file_sha256(path)
        except OSError as exc:
            return f"file {path} cannot be read ({exc.strerror})"
        if now == registered:
            return None
        return (
            f"file {path} changed since it was registered "
            f"(sha256 registered {registered}, now {now})"
        )

    def _path_of(self, key: str) -> str:
        if key.startswith("options."):
            return str(self.options.get(key.removeprefix("options.")))
        if key == SOURCE_KEY:
            return self.source
        return str(Path(self.source) / key.removeprefix(f"{SOURCE_KEY}/"))

    @classmethod
    def parse(cls, data: dict[str, Any]) -> ModelSpec:
        """Validate, turning pydantic's error into an ``InvalidInput`` that names the field."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise InvalidInput(describe_validation_error(exc)) from exc

    @classmethod
    def from_yaml(cls, path: str | Path) -> list[ModelSpec]:
        """A YAML file holds one spec, a list of specs, or ``{models: [...]}``."""
        data = yaml.safe_load(Path(path).read_text())
        if isinstance(data, dict) and "models" in data:
            data = data["models"]
        items = data if isinstance(data, list) else [data]
        specs = []
        for item in items:
            if not isinstance(item, dict):
                raise InvalidInput(
                    f"{path}: each model must be a mapping, got {type(item).__name__}"
                )
            spec = cls.parse(item)
            if not Path(spec.source).is_absolute():
                spec = spec.model_copy(update={"source": str(Path(path).parent / spec.source)})
            specs.append(spec)
        return specs


def _check_lora(spec: ModelSpec) -> None:
    """``options.lora`` (an adapter GGUF by absolute path) and ``options.lora_scale`` (a number,
    default 1) are llama.cpp's: checked here so a bad one is refused when registered."""
    lora, scale = spec.options.get("lora"), spec.options.get("lora_scale")
    if lora is None and scale is None:
        return
    if spec.runtime != "llamacpp":
        raise ValueError("options.lora (a LoRA adapter) is served by runtime 'llamacpp' only")
    if not isinstance(lora, str) or not Path(lora).is_absolute():
        raise ValueError("options.lora must be the absolute path of a LoRA adapter GGUF file")
    if scale is not None and (
        isinstance(scale, bool) or not isinstance(scale, int | float) or not 0 < scale <= 16
    ):
        raise ValueError("options.lora_scale must be a number in (0, 16]")


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in chunks (about 1 GB/s)."""
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        parts.append(f"{loc}: {err['msg']}")
    return "invalid model spec: " + "; ".join(parts)
