"""What the server and a replica's worker say to each other, as declared types.

Every message is a msgspec ``Struct`` sent as MessagePack bytes (``Connection.send_bytes``).
A message holds plain data only (numbers, text, bytes, lists, maps), never a pickled object,
so the same bytes can cross a process pipe today and a network hop to a Ray actor later, and
neither side runs code the other sent.

    server → worker   Infer (a batch) | Add (a generation) | Cancel | Stop
    worker → server   Ready | LoadError | Result | Failed | Event

Tensors travel as ``Tensor``: numeric arrays as their dtype, shape and C-order bytes; object
arrays (text, or lists of token ids) as their elements; object arrays whose elements are all
``bytes`` (encoded image files) as ``blobs``, since MessagePack keeps text and bytes apart but a
msgspec union may hold only one of them. ``check_payload`` is the contract a
request's payload must meet before it may be batched: anything else is the client's 400 there,
not a failure of a whole batch at the pipe. Errors travel as one ``ErrorEnvelope`` for batch
results and generation streams alike, turned back into ``aimass.errors`` classes through the
explicit ``ERROR_CLASSES`` table.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import numpy as np

from aimass.errors import (
    AimassError,
    Conflict,
    DeadlineExceeded,
    InvalidInput,
    ModelFailed,
    NotFound,
    PayloadTooLarge,
    QueueFull,
    TooManyRequests,
    Unavailable,
    Unprocessable,
)

Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
"""The integers a message carries (MessagePack's signed range); Python's own are unbounded."""

Item = str | list[Int64]
"""One element of an object array: a text, or a list of token ids."""

_ITEMS = list[Item]
_FIXED_KINDS = "biufcmMUS"  # dtypes whose bytes are the whole value
BLOBS = "blobs"
"""``Tensor.dtype`` of an object array of ``bytes`` (its elements are in ``Tensor.blobs``)."""


# tensors


class Tensor(msgspec.Struct, array_like=True):
    """One array: ``data`` for fixed-size dtypes, ``items`` for object arrays of text or
    token ids, ``blobs`` for object arrays of bytes."""

    dtype: str
    shape: tuple[int, ...]
    data: bytearray = bytearray()
    items: _ITEMS = []
    blobs: list[bytes] = []

    @classmethod
    def of(cls, array: np.ndarray, *, check: bool = False) -> Tensor:
        """Encode an array; ``check`` validates its object elements (``check_payload`` does
        it once per request on the server; the worker does it for every output)."""
        if check:
            _check(array)
        if array.dtype.kind == "O":
            flat = array.ravel().tolist()
            if flat and all(isinstance(x, bytes) for x in flat):
                return cls(BLOBS, array.shape, blobs=flat)
            return cls("|O", array.shape, items=flat)
        flat = np.ascontiguousarray(array).reshape(-1)
        return cls(flat.dtype.str, array.shape, data=memoryview(flat.view(np.uint8)))

    def array(self) -> np.ndarray:
        if self.dtype in ("|O", BLOBS):
            elements = self.blobs if self.dtype == BLOBS else self.items
            flat = np.fromiter(elements, dtype=object, count=len(elements))
            return flat.reshape(self.shape)
        return np.frombuffer(self.data, dtype=np.dtype(self.dtype)).reshape(self.shape)


Tensors = dict[str, Tensor]


def encode_payload(payload: dict[str, np.ndarray], *, check: bool = False) -> Tensors:
    return {name: Tensor.of(array, check=check) for name, array in payload.items()}


def decode_payload(tensors: Tensors) -> dict[str, np.ndarray]:
    return {name: tensor.array() for name, tensor in tensors.items()}


def check_payload(payload: dict[str, np.ndarray]) -> None:
    """Refuse (400) a payload that cannot cross to a replica: a dtype with no byte form, an
    object element that is neither a text nor a list of int64 token ids (an array of bytes
    elements only is fine too)."""
    for name, array in payload.items():
        try:
            _check(array)
        except (TypeError, msgspec.ValidationError) as exc:
            raise InvalidInput(f"input {name!r}: {exc}") from None


def _check(array: np.ndarray) -> None:
    if array.dtype.kind == "O":
        flat = array.ravel().tolist()
        if flat and all(type(x) is str for x in flat):
            return  # the common case (texts), without msgspec's walk
        if not (flat and all(isinstance(x, bytes) for x in flat)):
            msgspec.convert(flat, _ITEMS)
    elif array.dtype.kind not in _FIXED_KINDS or array.dtype.fields is not None:
        raise TypeError(f"arrays of dtype {array.dtype} cannot be sent to a replica")


# errors


ERROR_CLASSES: dict[str, type[AimassError]] = {
    cls.code: cls
    for cls in (
        InvalidInput,
        PayloadTooLarge,
        Unprocessable,
        NotFound,
        Conflict,
        TooManyRequests,
        QueueFull,
        Unavailable,
        DeadlineExceeded,
        ModelFailed,
        AimassError,
    )
}
"""The errors a replica may report, by their stable ``code``; any other code reads as
ModelFailed (a runtime that raised something the server does not know is the model's fault)."""


class ErrorEnvelope(msgspec.Struct, omit_defaults=True):
    """An ``AimassError`` as data: its code, message and HTTP status, plus what its rendering
    needs (the parameter it names, the seconds a 429 asks the client to wait)."""

    code: str
    message: str
    status: int
    param: str | None = None
    retry_after: float | None = None

    @classmethod
    def of(cls, error: AimassError) -> ErrorEnvelope:
        retry_after = error.retry_after if isinstance(error, TooManyRequests) else None
        return cls(error.code, error.message, error.status, error.param, retry_after)

    def exception(self) -> AimassError:
        cls = ERROR_CLASSES.get(self.code, ModelFailed)
        if issubclass(cls, TooManyRequests):
            return cls(self.message, param=self.param, retry_after=self.retry_after or 1.0)
        return cls(self.message, param=self.param)


# generation


class GenerationRequest(msgspec.Struct, omit_defaults=True, forbid_unknown_fields=True):
    """What a generative runtime reads to start a sequence (see ``runtimes/llamacpp``)."""

    prompt: str | list[Int64] | None = None
    messages: list[dict[str, Any]] | None = None
    max_tokens: Int64 | None = None
    max_tokens_cap: Int64 | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: Int64 | None = None
    min_p: float | None = None
    seed: Int64 | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None
    stop: list[str] | None = None
    response_format: dict[str, Any] | None = None
    grammar: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    logit_bias: dict[str, float] | None = None
    n: Int64 | None = None
    logprobs: bool | None = None
    top_logprobs: Int64 | None = None
    deadline: float | None = None

    @classmethod
    def of(cls, request: dict[str, Any]) -> GenerationRequest:
        """Validate a request dict; a value the message cannot carry is InvalidInput.

        A seed of any size (and sign) is kept to its low 63 bits; the runtime uses the low 32.
        """
        seed = request.get("seed")
        if type(seed) is int:
            request = {**request, "seed": seed & (2**63 - 1)}
        try:
            return msgspec.convert(request, cls)
        except msgspec.ValidationError as exc:
            message = f"the generation request cannot be sent to the model: {exc}"
            raise InvalidInput(message) from None

    def as_dict(self) -> dict[str, Any]:
        """The fields that are set, as the runtime's plain dict."""
        return {k: v for k, v in msgspec.structs.asdict(self).items() if v is not None}


class Usage(msgspec.Struct):
    """Token counts of one choice; ``cached_tokens`` of the prompt came from the prefix cache
    (prompt and cached counts are the request's, repeated on every choice's last event)."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int = 0


class TopLogprob(msgspec.Struct):
    """One of the most likely tokens at a position: its text, log-probability and bytes."""

    token: str
    logprob: float
    bytes: list[int]


class TokenLogprob(msgspec.Struct):
    """The sampled token at one position, as OpenAI reports it: the log-softmax of the raw
    logits over the whole vocabulary (before penalties, grammar or temperature), and the
    ``top_logprobs`` most likely tokens at that position (most likely first)."""

    token: str
    logprob: float
    bytes: list[int]
    top_logprobs: list[TopLogprob] = []


class Timings(msgspec.Struct):
    """Wall-clock times (``time.time()``) of one sequence."""

    queued_at: float
    first_token_at: float | None
    finished_at: float


class GenerationEvent(msgspec.Struct, omit_defaults=True):
    """What one step produced for one choice of a request.

    ``text`` while generating; the last event of a choice has ``finish_reason`` and
    ``usage`` (and ``timings``), or ``error``. ``stats`` carries the replica's gauges
    (running, waiting, kv_used, kv_total, ...) and may come alone: see the worker's ``_Gauges``.

    ``index`` is the choice (0 .. n-1). With ``n`` > 1 every choice streams its own events and
    its own last event (``finish_reason``, ``usage`` with that choice's completion_tokens;
    prompt_tokens and cached_tokens repeated); the request is complete when all n choices have
    sent theirs, and only the message carrying the last of them has ``Event.done``. An
    ``error`` ends the whole request (all choices). With n == 1 there is one choice, index 0.

    ``logprobs`` (when the request asked for them) has one entry per generated token whose
    text is in this event's ``text``; a token held back (half a UTF-8 character, the start of
    a possible stop string) comes with the event that releases its text. Tokens cut by a stop
    string are not reported.
    """

    index: int = 0
    text: str = ""
    logprobs: list[TokenLogprob] | None = None
    finish_reason: str | None = None
    usage: Usage | None = None
    timings: Timings | None = None
    stats: dict[str, float] | None = None
    error: ErrorEnvelope | None = None

    @property
    def only_stats(self) -> bool:
        """True for an event that carries the gauges and nothing for the client."""
        return not self.text and self.finish_reason is None and self.error is None

    @classmethod
    def of(cls, data: dict[str, Any]) -> GenerationEvent:
        """From a runtime's ``StepEvent.data``, whose ``error`` is an ``AimassError``."""
        error = data.get("error")
        fields = {k: v for k, v in data.items() if k != "error"}
        event = msgspec.convert(fields, cls)
        if error is not None:
            event.error = ErrorEnvelope.of(error)
        return event


# server → worker


class Infer(msgspec.Struct, tag="infer", array_like=True):
    id: int
    inputs: Tensors


class Add(msgspec.Struct, tag="add", array_like=True):
    id: int
    request: GenerationRequest


class Cancel(msgspec.Struct, tag="cancel", array_like=True):
    id: int


class Stop(msgspec.Struct, tag="stop", array_like=True):
    pass


# worker → server


class Ready(msgspec.Struct, tag="ready", array_like=True):
    """The model loaded; ``info`` is its tensors, ``pid`` and the runtime's ``describe()``."""

    info: dict[str, Any]


class LoadError(msgspec.Struct, tag="load_error", array_like=True):
    message: str


class Result(msgspec.Struct, tag="result", array_like=True):
    """A batch's outputs; ``row_errors`` (one error or None per row) when some rows failed."""

    id: int
    outputs: Tensors
    row_errors: list[ErrorEnvelope | None] | None = None


class Failed(msgspec.Struct, tag="error", array_like=True):
    """A batch, or a sequence's admission, failed as a whole."""

    id: int
    error: ErrorEnvelope


class Event(msgspec.Struct, tag="event", array_like=True):
    id: int
    event: GenerationEvent
    done: bool


ToWorker = Infer | Add | Cancel | Stop
ToServer = Ready | LoadError | Result | Failed | Event

encode = msgspec.msgpack.Encoder().encode
decode_to_worker = msgspec.msgpack.Decoder(ToWorker).decode
decode_to_server = msgspec.msgpack.Decoder(ToServer).decode


def message_id(raw: bytes) -> int | None:
    """The request id of a message that failed typed decoding, if it has one where ids go,
    so the request can be answered with an error instead of waiting for its deadline."""
    try:
        fields = msgspec.msgpack.decode(raw)
    except msgspec.DecodeError:
        return None
    if isinstance(fields, list) and len(fields) > 1 and type(fields[1]) is int:
        return fields[1]
    return None
