"""Open Inference Protocol (KServe v2 / Triton) wire types, REST flavour.

Request types are strict (a shape is a list of integers, not of ``"1"`` or ``1.0``); answers
are what the routes write, for the OpenAPI document and its checks.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool


class RequestInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = None


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] | None = None


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class RepositoryIndexRequest(BaseModel):
    """Body of ``POST /v2/repository/index`` (optional): ``ready`` lists only ready versions
    (null or absent: all)."""

    ready: StrictBool | None = None


class RepositoryModel(BaseModel):
    """One registered version in the repository index, with the extension's state names."""

    name: str
    version: str
    state: Literal["READY", "LOADING", "UNAVAILABLE"]
    reason: str = ""


class LoadRequest(BaseModel):
    """``parameters.config`` may carry a full model spec (JSON) to register before loading."""

    model_config = ConfigDict(extra="forbid", strict=True)

    parameters: dict[str, Any] | None = None


class LoadResponse(BaseModel):
    """``POST /v2/repository/models/{name}/load``: the version now loaded, and its state."""

    name: str
    version: str
    state: str


class UnloadResponse(BaseModel):
    """``POST /v2/repository/models/{name}/unload``: the versions that were unloaded."""

    name: str
    unloaded_versions: list[str]


class LiveResponse(BaseModel):
    """``GET /v2/health/live``: the server process answers."""

    live: bool


class ReadyResponse(BaseModel):
    """``GET /v2/health/ready``: 200 when every model meant to be loaded is, 503 otherwise."""

    ready: bool


class ModelReadyResponse(BaseModel):
    """``GET /v2/models/{name}[/versions/{version}]/ready``: 200 when ready, 400 with ``error``
    saying why not (loading, failed, unloaded)."""

    name: str
    ready: bool
    error: str | None = None
    """Present only when the model is not ready."""


class InferenceErrorResponse(BaseModel):
    """Every error under ``/v2``, as the Open Inference Protocol writes it."""

    error: str


class StatisticDuration(BaseModel):
    """A count and the nanoseconds it took in all (Triton's statistics extension)."""

    count: int
    ns: int


class InferStatistics(BaseModel):
    success: StatisticDuration
    fail: StatisticDuration
    queue: StatisticDuration
    compute_input: StatisticDuration
    compute_infer: StatisticDuration
    compute_output: StatisticDuration
    cache_hit: StatisticDuration
    cache_miss: StatisticDuration


class InferBatchStatistics(BaseModel):
    batch_size: int
    compute_input: StatisticDuration
    compute_infer: StatisticDuration
    compute_output: StatisticDuration


class ModelStatistics(BaseModel):
    """One loaded version's cumulative figures, in Triton's JSON shape."""

    name: str
    version: str
    last_inference: int
    """Unix milliseconds of the last request (0: none yet)."""
    inference_count: int
    execution_count: int
    inference_stats: InferStatistics
    batch_stats: list[InferBatchStatistics]


class ModelStatisticsResponse(BaseModel):
    """``GET /v2/models[/{name}[/versions/{version}]]/stats``."""

    model_stats: list[ModelStatistics]
