"""OpenAI wire types: /v1/completions, /v1/chat/completions, /v1/models and the error shape.

Requests accept the fields OpenAI defines for these endpoints plus llama.cpp-style sampling
extras (``top_k``, ``min_p``, ``repetition_penalty``). Nothing is dropped in silence: a field
OpenAI defines that this server cannot honour (``audio``, ``prediction``, the deprecated
``functions``...) is a 400 naming it, and so is any field OpenAI does not define, as OpenAI's
own API answers "Unrecognized request argument". Fields OpenAI treats as metadata (``user``,
``metadata``, ``store``, ``prompt_cache_key``, ``safety_identifier``) are accepted and not
acted on. Types are strict, as OpenAI's are: ``"16"`` is not a number, ``0`` is not a
boolean. ``to_runtime`` turns a request into the plain dict the runtime reads.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    WithJsonSchema,
    field_serializer,
    field_validator,
    model_validator,
)

StopString = Annotated[str, Field(min_length=1)]
MAX_N = 16
"""The most choices a request may ask for here; a model's ``options.max_n`` may allow fewer."""
MAX_TOP_LOGPROBS = 20
TokenId = Annotated[str, Field(pattern=r"^[0-9]{1,9}$")]
Bias = Annotated[float, Field(ge=-100.0, le=100.0)]


def _refused(why: str) -> Any:
    """A field OpenAI defines that this server does not support: absent or null is fine,
    anything else is a 400 naming the field and saying why."""

    def check(value: Any) -> Any:
        if value is not None:
            raise ValueError(why)
        return value

    schema = {"type": "null", "description": f"Not supported: {why}."}
    return Annotated[Any, AfterValidator(check), WithJsonSchema(schema)]


_STRICT = ConfigDict(extra="forbid", strict=True)


class StreamOptions(BaseModel):
    model_config = _STRICT

    include_usage: bool = False
    include_obfuscation: bool = False
    """Accepted; nothing is obfuscated (the stream carries no padding field)."""


class ResponseFormat(BaseModel):
    """``text``, ``json_object``, or ``json_schema`` with ``{"name", "schema", "strict"}``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and not self.json_schema:
            raise ValueError("json_schema is required when type is 'json_schema'")
        return self


class _SamplingFields(BaseModel):
    """Fields shared by both endpoints."""

    model_config = _STRICT

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
    logit_bias: dict[TokenId, Bias] | None = None
    """Token id (as a string) to a bias in [-100, 100] added to its logit; -100 bans it."""
    stop: StopString | Annotated[list[StopString], Field(max_length=4)] | None = None
    """Up to four non-empty strings that end the generation."""
    n: int = Field(default=1, ge=1, le=MAX_N)
    response_format: ResponseFormat | None = None
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
            "logit_bias",
        )
        out: dict[str, Any] = {k: getattr(self, k) for k in names if getattr(self, k) is not None}
        if self.stop is not None:
            out["stop"] = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        if self.n > 1:
            out["n"] = self.n
        if self.response_format is not None and self.response_format.type != "text":
            out["response_format"] = self.response_format.model_dump()
        return out

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class CompletionRequest(_SamplingFields):
    """POST /v1/completions. ``max_tokens`` defaults to 16, as OpenAI's does."""

    prompt: str | list[int] | list[str] | list[list[int]]
    max_tokens: int | None = Field(default=16, ge=1)
    echo: bool = False
    """Put the prompt (a text prompt) in front of each choice's text."""
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    """The log-probability of each token and of this many likeliest alternatives."""
    best_of: int | None = Field(default=None, ge=1, le=MAX_N)
    """Only ``best_of`` == ``n`` (no server-side ranking of extra choices)."""
    suffix: _refused("fill-in-the-middle (suffix) is not supported") = None

    @field_validator("echo")
    @classmethod
    def _text_to_echo(cls, value: bool, info: ValidationInfo) -> bool:
        prompt = info.data.get("prompt")
        if value and isinstance(prompt, list) and prompt and not isinstance(prompt[0], str):
            raise ValueError("echo needs a text prompt (token ids are not turned back to text)")
        return value

    @field_validator("logprobs")
    @classmethod
    def _not_of_the_prompt(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and info.data.get("echo"):
            raise ValueError("logprobs of an echoed prompt are not computed; drop echo")
        return value

    @field_validator("best_of")
    @classmethod
    def _no_ranking(cls, value: int | None, info: ValidationInfo) -> int | None:
        n = info.data.get("n", 1)
        if value is not None and value != n:
            raise ValueError(f"best_of must equal n ({n}): extra choices are not ranked here")
        return value

    @model_validator(mode="after")
    def _one_prompt(self) -> CompletionRequest:
        if isinstance(self.prompt, list) and self.prompt and not isinstance(self.prompt[0], int):
            if len(self.prompt) != 1:
                raise ValueError("only one prompt per request is supported")
            self.prompt = self.prompt[0]
        return self

    def to_runtime(self) -> dict[str, Any]:
        out = {"prompt": self.prompt, "max_tokens": self.max_tokens, **self.sampling()}
        if self.logprobs is not None:
            out["logprobs"] = True
            out["top_logprobs"] = self.logprobs
        return out


class FunctionCall(BaseModel):
    model_config = _STRICT

    name: str = Field(min_length=1)
    arguments: str
    """The arguments as a JSON text, as the model wrote them."""


class ToolCall(BaseModel):
    model_config = _STRICT

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(BaseModel):
    """One message; content is a string or a list of ``{"type": "text", "text": ...}`` parts.

    An assistant message may carry the ``tool_calls`` it made, and a ``tool`` message answers
    one of them (``tool_call_id``), so a conversation with tools can be sent back whole."""

    model_config = _STRICT

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    audio: _refused("audio messages are not supported") = None
    function_call: _refused("function_call is deprecated by OpenAI; send tool_calls") = None

    @model_validator(mode="after")
    def _text_only(self) -> ChatMessage:
        if isinstance(self.content, list):
            for part in self.content:
                if part.get("type") != "text" or not isinstance(part.get("text"), str):
                    raise ValueError("only text content parts are supported")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("only assistant messages carry tool_calls")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs the tool_call_id it answers")
        return self

    def to_runtime(self) -> dict[str, Any]:
        role = "system" if self.role == "developer" else self.role
        out: dict[str, Any] = {"role": role, "content": self.content or ""}
        if self.tool_calls:
            out["tool_calls"] = [call.model_dump() for call in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.name is not None:
            out["name"] = self.name
        return out


class FunctionDefinition(BaseModel):
    model_config = _STRICT

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    """The arguments' JSON schema; a call is held to it by a grammar when it is forced."""
    strict: bool | None = None


class Tool(BaseModel):
    model_config = _STRICT

    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    model_config = _STRICT

    name: str = Field(min_length=1)


class NamedToolChoice(BaseModel):
    model_config = _STRICT

    type: Literal["function"]
    function: NamedFunction


class ChatCompletionRequest(_SamplingFields):
    """POST /v1/chat/completions."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    """The same as ``max_tokens`` (its new name); both given must agree."""
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    tools: list[Tool] | None = Field(default=None, max_length=128)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    modalities: list[Literal["text"]] | None = None
    metadata: dict[str, str] | None = None
    store: bool | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    service_tier: Literal["auto", "default"] | None = None
    audio: _refused("audio output is not supported") = None
    prediction: _refused("predicted outputs are not supported") = None
    reasoning_effort: _refused("the served models do not reason") = None
    verbosity: _refused("verbosity is not supported") = None
    web_search_options: _refused("web search is not supported") = None
    functions: _refused("functions is deprecated by OpenAI; send tools") = None
    function_call: _refused("function_call is deprecated by OpenAI; send tool_choice") = None

    @field_validator("max_completion_tokens")
    @classmethod
    def _same_as_max_tokens(cls, value: int | None, info: ValidationInfo) -> int | None:
        other = info.data.get("max_tokens")
        if None not in (value, other) and value != other:
            raise ValueError(f"{value} disagrees with max_tokens ({other}); send one of them")
        return value

    @field_validator("top_logprobs")
    @classmethod
    def _needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value is not None and not info.data.get("logprobs"):
            raise ValueError("top_logprobs needs logprobs: true")
        return value

    @field_validator("tool_choice")
    @classmethod
    def _names_a_tool(cls, value: Any, info: ValidationInfo) -> Any:
        tools = info.data.get("tools") or []
        named = isinstance(value, NamedToolChoice)
        if (named or value == "required") and not tools:
            raise ValueError("tool_choice needs tools")
        if named and value.function.name not in {t.function.name for t in tools}:
            raise ValueError(f"names {value.function.name!r}, which is not among the tools")
        return value

    @property
    def calls_tools(self) -> bool:
        """True when the model may (or must) answer with tool calls."""
        return bool(self.tools) and self.tool_choice != "none"

    def to_runtime(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "messages": [m.to_runtime() for m in self.messages],
            "max_tokens": self.max_completion_tokens or self.max_tokens,
            **self.sampling(),
        }
        if self.logprobs:
            out["logprobs"] = True
            out["top_logprobs"] = self.top_logprobs or 0
        if self.calls_tools:
            out["tools"] = [t.model_dump(exclude_none=True) for t in self.tools or ()]
            choice = self.tool_choice or "auto"
            out["tool_choice"] = choice if isinstance(choice, str) else choice.model_dump()
            out["parallel_tool_calls"] = self.parallel_tool_calls is not False
        return out


class PromptTokensDetails(BaseModel):
    cached_tokens: int = 0
    """Prompt tokens whose KV cells came from the prefix cache (not computed again)."""


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    """All choices together."""
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = Field(default_factory=PromptTokensDetails)


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob]


class ChoiceLogprobs(BaseModel):
    """Chat's logprobs: one entry per generated token."""

    content: list[TokenLogprob] | None
    refusal: list[TokenLogprob] | None = None


class CompletionLogprobs(BaseModel):
    """The legacy completions shape: parallel lists, one item per token."""

    tokens: list[str]
    token_logprobs: list[float]
    top_logprobs: list[dict[str, float]]
    text_offset: list[int]
    """Where each token starts in the choice's text."""


FinishReason = Literal["stop", "length", "tool_calls"]


class CompletionChoice(BaseModel):
    index: int = 0
    text: str
    finish_reason: FinishReason | None = None
    logprobs: CompletionLogprobs | None = None


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
    content: str | None
    tool_calls: list[ToolCall] | None = None
    refusal: str | None = None


class ChatChoice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionResponse(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    system_fingerprint: str | None = None


class FunctionCallDelta(BaseModel):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(BaseModel):
    """A piece of one tool call: the first carries its ``id``, ``type`` and name, the next
    ones pieces of its arguments, all under the call's ``index``."""

    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class ChatDelta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChatChunkChoice(BaseModel):
    index: int = 0
    delta: ChatDelta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None

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
