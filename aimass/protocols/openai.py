"""OpenAI wire types: /v1/completions, /v1/chat/completions, /v1/models and the error shape.

Requests accept the fields the official SDK sends plus llama.cpp-style sampling extras
(``top_k``, ``min_p``, ``repetition_penalty``); unknown fields are ignored as OpenAI does.
Fields we cannot honour (``n`` > 1, ``logprobs``, ``tools``) are refused by name rather than
silently dropped. Types are strict, as OpenAI's are: ``"16"`` is not a number, ``0`` is not a
boolean. ``to_runtime`` turns a request into the plain dict the runtime reads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer, model_validator

StopString = Annotated[str, Field(min_length=1)]


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    include_usage: bool = False


class ResponseFormat(BaseModel):
    """``text``, ``json_object``, or ``json_schema`` with ``{"name", "schema", "strict"}``."""

    model_config = ConfigDict(extra="ignore", strict=True)

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and not self.json_schema:
            raise ValueError("json_schema is required when type is 'json_schema'")
        return self


class _SamplingFields(BaseModel):
    """Fields shared by both endpoints."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, ge=0.0, le=1.0)
    top_k: int | None = Field(default=None, ge=0)
    min_p: float | None = Field(default=None, ge=0.0, le=1.0)
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(default=None, ge=0.01, le=10.0)
    stop: StopString | Annotated[list[StopString], Field(max_length=4)] | None = None
    """Up to four non-empty strings that end the generation."""
    n: int = Field(default=1, ge=1, le=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    def sampling(self) -> dict[str, Any]:
        """Runtime sampling fields; unset ones are left to the runtime's defaults."""
        names = (
            "temperature",
            "top_p",
            "top_k",
            "min_p",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "repetition_penalty",
        )
        out: dict[str, Any] = {k: getattr(self, k) for k in names if getattr(self, k) is not None}
        if self.stop is not None:
            out["stop"] = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        return out

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_SamplingFields):
    """POST /v1/completions. ``max_tokens`` defaults to 16, as OpenAI's does."""

    prompt: str | list[int] | list[str] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool = False
    logprobs: int | None = Field(default=None, le=0)
    suffix: str | None = None

    @model_validator(mode="after")
    def _one_prompt(self) -> CompletionRequest:
        if isinstance(self.prompt, list) and self.prompt and not isinstance(self.prompt[0], int):
            if len(self.prompt) != 1:
                raise ValueError("only one prompt per request is supported")
            self.prompt = self.prompt[0]
        if self.suffix:
            raise ValueError("suffix (fill-in-the-middle) is not supported")
        return self

    def to_runtime(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "max_tokens": self.max_tokens, **self.sampling()}


class ChatMessage(BaseModel):
    """One message; content is a string or a list of ``{"type": "text", "text": ...}`` parts."""

    model_config = ConfigDict(extra="ignore", strict=True)

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None

    @model_validator(mode="after")
    def _text_only(self) -> ChatMessage:
        if isinstance(self.content, list):
            for part in self.content:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValueError("only text content parts are supported")
        return self

    def to_runtime(self) -> dict[str, Any]:
        role = "system" if self.role == "developer" else self.role
        return {"role": role, "content": self.content or ""}


class ChatCompletionRequest(_SamplingFields):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None
    logprobs: Literal[False] | None = None
    tools: list[Any] | None = Field(default=None, max_length=0)

    def to_runtime(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "messages": [m.to_runtime() for m in self.messages],
            "max_tokens": self.max_completion_tokens or self.max_tokens,
            **self.sampling(),
        }
        if self.response_format is not None and self.response_format.type != "text":
            out["response_format"] = self.response_format.model_dump()
        return out


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class CompletionResponse(BaseModel):
    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None

    @field_serializer("delta")
    def _compact_delta(self, delta: ChatDelta) -> dict[str, Any]:
        """A delta carries only what changed (``role`` once, then ``content`` pieces)."""
        return delta.model_dump(exclude_none=True)


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChatChunkChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class Model(BaseModel):
    """One served model in ``GET /v1/models``: OpenAI's fields, then ours for clients that
    want them."""

    id: str
    object: Literal["model"] = "model"
    created: int
    """When the served version was registered (Unix seconds)."""
    owned_by: str
    task: str
    version: int
    """The version a plain name is served by."""
    versions: list[int]
    """Every loaded version, each usable as ``name:version``."""
    state: str
    description: str


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Model]


class ErrorDetail(BaseModel):
    message: str
    type: str
    """OpenAI's error class: ``invalid_request_error``, ``authentication_error``..."""
    param: str | None
    """The request field at fault, when one is."""
    code: str | None
    """A stable machine-readable name (``invalid_input``, ``queue_full``...)."""


class ErrorResponse(BaseModel):
    """Every error outside ``/v2``, in OpenAI's shape."""

    error: ErrorDetail
