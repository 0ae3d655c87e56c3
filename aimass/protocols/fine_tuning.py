"""Wire types of /v1/fine_tuning/jobs, OpenAI's fine-tuning API.

A job trains a new version of a model on an uploaded file (purpose ``fine-tune``), evaluates it
and the version serving now on the same validation data, and registers the result without
promoting it (unless ``auto_promote``, an AI Mass extension, says so and the candidate wins).
Objects have OpenAI's shapes: ``fine_tuning.job``, ``fine_tuning.job.event`` and
``fine_tuning.job.checkpoint`` (with ``metrics``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from aimass.protocols.vector_stores import check_metadata

MAX_LIST_LIMIT = 100
Status = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
Auto = Literal["auto"]


Epochs = Annotated[int, Field(ge=1, le=50)]
BatchSize = Annotated[int, Field(ge=1, le=256)]
RateMultiplier = Annotated[float, Field(gt=0, le=100)]


class Hyperparameters(BaseModel):
    """OpenAI's three knobs ("auto": the method's default), plus ``label_column`` for CSV."""

    model_config = ConfigDict(extra="forbid")

    n_epochs: Epochs | Auto = "auto"
    batch_size: BatchSize | Auto = "auto"
    learning_rate_multiplier: RateMultiplier | Auto = "auto"
    label_column: str | None = Field(default=None, min_length=1, max_length=200)
    """Tabular training files: the CSV column that holds the target (default ``label``)."""


class Supervised(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: Hyperparameters | None = None


class Method(BaseModel):
    """OpenAI's ``method``: only ``supervised`` is trained here."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["supervised"]
    supervised: Supervised | None = None


class AutoPromote(BaseModel):
    """Promote the new version only if it beats the serving one by ``margin`` on ``metric``
    (same validation data); the method's main metric when ``metric`` is not given."""

    model_config = ConfigDict(extra="forbid")

    metric: str | None = Field(default=None, min_length=1, max_length=64)
    margin: float = Field(default=0.0, ge=0, le=1e9)


class FineTuningJobCreate(BaseModel):
    """The body of ``POST /v1/fine_tuning/jobs``."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    training_file: str = Field(min_length=1, max_length=64)
    validation_file: str | None = Field(default=None, min_length=1, max_length=64)
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    suffix: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_-]{1,64}$")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    metadata: dict[str, str] | None = None
    auto_promote: AutoPromote | None = None

    _metadata = field_validator("metadata")(check_metadata)

    def chosen_hyperparameters(self) -> Hyperparameters:
        """``method.supervised.hyperparameters`` (OpenAI's newer place) or ``hyperparameters``."""
        supervised = self.method.supervised if self.method is not None else None
        if supervised is not None and supervised.hyperparameters is not None:
            return supervised.hyperparameters
        return self.hyperparameters or Hyperparameters()


class FineTuningError(BaseModel):
    code: str
    message: str
    param: str | None = None


class FineTuningJob(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    created_at: int
    error: FineTuningError | None = None
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    hyperparameters: dict[str, Any]
    model: str
    organization_id: str = "org-aimass"
    result_files: list[str] = Field(default_factory=list)
    seed: int
    status: Status
    trained_tokens: int | None = None
    training_file: str
    validation_file: str | None = None
    estimated_finish: int | None = None
    integrations: list[Any] | None = None
    metadata: dict[str, str] | None = None
    method: dict[str, Any] | None = None
    user_provided_suffix: str | None = None
    registered_model: str | None = None
    """AI Mass: ``name:version`` of the new version in the registry (what to call it by)."""
    evaluation: dict[str, Any] | None = None
    """AI Mass: the metrics of the new version and of the serving version, side by side, and
    the auto-promotion decision."""


class FineTuningJobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJob]
    has_more: bool = False


class FineTuningJobEvent(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"]
    message: str
    data: dict[str, Any] | None = None
    type: Literal["message", "metrics"] = "message"


class FineTuningJobEventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobEvent]
    has_more: bool = False


class FineTuningJobCheckpoint(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    metrics: dict[str, float]
    step_number: int


class FineTuningJobCheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FineTuningJobCheckpoint]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False
