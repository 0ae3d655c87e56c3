"""The ModelSpec: everything needed to serve one version of one model.

Shared by every layer. Loaded from YAML (``ModelSpec.from_yaml``), from CLI flags, or from
the registry; an invalid spec is refused by pydantic with an error naming the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from aimass.errors import InvalidInput

Runtime = Literal["onnx", "tabular", "llamacpp", "transformers"]
Task = Literal[
    "tensor",
    "classification",
    "regression",
    "text-generation",
    "embedding",
    "rerank",
    "text-classification",
]

GENERATIVE_TASKS = frozenset({"text-generation"})
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


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


class Limits(BaseModel):
    """Admission limits: every queue is bounded and every request has a deadline."""

    model_config = ConfigDict(extra="forbid")

    max_queue: int = Field(default=256, ge=1, le=1_000_000)
    """Requests waiting for a batch (or, for LLMs, for a sequence slot); full → 429."""
    timeout_s: float = Field(default=30.0, gt=0, le=86_400)
    """Deadline of a request from arrival; expired requests never reach the model (504)."""
    max_concurrent: int = Field(default=0, ge=0)
    """LLMs: sequences decoded together per replica (0: runtime default)."""


class ModelSpec(BaseModel):
    """One version of one model and how to serve it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(default=1, ge=1)
    task: Task = "tensor"
    runtime: Runtime
    source: str = Field(min_length=1)
    """Local path of the model file or directory."""
    batching: Batching = Field(default_factory=Batching)
    limits: Limits = Field(default_factory=Limits)
    replicas: int = Field(default=1, ge=1, le=64)
    threads: int = Field(default=1, ge=1, le=256)
    """Intra-op threads per replica."""
    trust_pickle: bool = False
    """Allow joblib/pickle model files, which run code when loaded."""
    options: dict[str, Any] = Field(default_factory=dict)
    """Runtime-specific options (e.g. ``n_ctx`` for llamacpp, ``pooling`` for transformers)."""
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if self.runtime == "llamacpp" and self.task != "text-generation":
            raise ValueError("runtime 'llamacpp' serves task 'text-generation' only")
        return self

    @property
    def generative(self) -> bool:
        return self.task in GENERATIVE_TASKS

    @property
    def key(self) -> tuple[str, int]:
        return (self.name, self.version)

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


def describe_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        parts.append(f"{loc}: {err['msg']}")
    return "invalid model spec: " + "; ".join(parts)
