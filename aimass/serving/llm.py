"""OpenAI text generation on top of the engine: completions and chat, streamed or whole.

HTTP-free: a route hands a validated request and a ``CallContext`` here. The call goes through
the pipeline (authorization, deployment, deadline, usage), its runtime request is built from
the wire type, ``ModelCall.generate`` yields the replica's events, and they are shaped into an
OpenAI response, or into SSE chunks the transport streams. Leaving the event iterator early
(client gone, timeout) closes it, which makes the deployment cancel the sequence in its
replica at once.

A request with ``n`` > 1 gets events of n choices, interleaved, each with its ``index`` and
its own last event; the request is finished when all n are. A chat request that offers tools
has each choice's text read by a ``ToolCallParser``: calls become ``message.tool_calls`` (or
``delta.tool_calls`` pieces in a stream) and the choice ends with ``finish_reason:
"tool_calls"``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aimass import metrics_llm
from aimass.config import Settings
from aimass.engine.deployment import Deployment, GenerationEvent
from aimass.engine.local.messages import TokenLogprob
from aimass.errors import AimassError, InvalidInput, ModelFailed
from aimass.protocols import openai as oa
from aimass.refs import split_model
from aimass.serving.llm_objects import ResponseShape, sse_line
from aimass.serving.pipeline import CallContext, ModelCall, Pipeline
from aimass.serving.toolcalls import ParsedCall, ToolCallParser


@dataclass
class Choice:
    """One choice's answer, gathered as its events arrive."""

    index: int
    parser: ToolCallParser | None = None
    text: list[str] = field(default_factory=list)
    """What the model wrote (the completion's text, the chat message's content and calls)."""
    content: list[str] = field(default_factory=list)
    """The text outside tool calls."""
    calls: list[ParsedCall] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int = 0

    def add(self, event: GenerationEvent) -> tuple[str, list[ParsedCall]]:
        """Take one event of this choice; return the content and calls it releases."""
        self.text.append(event.text)
        if event.logprobs:
            self.logprobs += event.logprobs
        if self.parser is None:
            content, calls = event.text, []
        else:
            content, calls = self.parser.feed(event.text)
            if event.finish_reason is not None:
                more, rest = self.parser.finish()
                content, calls = content + more, calls + rest
        self.content.append(content)
        self.calls += calls
        if event.finish_reason is not None:
            self.finish_reason = event.finish_reason
            if self.calls and event.finish_reason == "stop":
                self.finish_reason = "tool_calls"
            if event.usage is not None:
                self.completion_tokens = event.usage.completion_tokens
        return content, calls


@dataclass
class Generation:
    """What came back for one request, gathered while its events are consumed."""

    call: ModelCall
    started: float
    n: int = 1
    tools: frozenset[str] | None = None
    """The names of the functions offered when tool calls are to be read out of the text."""
    stream: bool = False
    """The answer streams: tool calls are also cut into deltas as they are written."""
    prompt_tokens: int = 0
    cached_tokens: int = 0
    last_text_at: float | None = None
    choices: dict[int, Choice] = field(default_factory=dict)

    @property
    def usage(self) -> oa.Usage:
        completion = sum(c.completion_tokens for c in self.choices.values())
        return oa.Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=completion,
            total_tokens=self.prompt_tokens + completion,
            prompt_tokens_details=oa.PromptTokensDetails(cached_tokens=self.cached_tokens),
        )

    @property
    def dep(self) -> Deployment:
        return self.call.deployment

    @property
    def finished(self) -> bool:
        done = [c for c in self.choices.values() if c.finish_reason is not None]
        return len(done) == self.n

    def choice(self, index: int) -> Choice:
        if index not in self.choices:
            parser = None
            if self.tools is not None:
                parser = ToolCallParser(self.tools, stream=self.stream)
            self.choices[index] = Choice(index, parser)
        return self.choices[index]

    def take(self, event: GenerationEvent) -> tuple[Choice, str, list[ParsedCall]]:
        """Account one event (metrics, usage); return its choice and what it releases;
        raise its error if any."""
        spec = self.dep.spec
        if event.stats is not None:
            metrics_llm.record_stats(spec.name, spec.version, event.stats)
        if event.error is not None:
            raise event.error.exception()
        if event.text:
            now = time.monotonic()
            if self.last_text_at is None:
                metrics_llm.record_first_token(spec.name, spec.version, now - self.started)
            else:
                metrics_llm.record_gap(spec.name, spec.version, now - self.last_text_at)
            self.last_text_at = now
        choice, content, calls = self.gather(event)
        if event.finish_reason is not None and self.finished:
            usage = self.usage
            self.call.tokens(usage.prompt_tokens, usage.completion_tokens)
            metrics_llm.record_usage(
                spec.name, spec.version, usage.prompt_tokens, usage.completion_tokens
            )
        return choice, content, calls

    def gather(self, event: GenerationEvent) -> tuple[Choice, str, list[ParsedCall]]:
        """Add one event to its choice and the request's usage (no metrics, no call)."""
        choice = self.choice(event.index)
        content, calls = choice.add(event)
        if event.finish_reason is not None and event.usage is not None:
            self.prompt_tokens = event.usage.prompt_tokens
            self.cached_tokens = event.usage.cached_tokens
        return choice, content, calls


class LLMService:
    """Completions and chat over the pipeline; one per server.

    A whole answer comes back as the response object (a dict); a stream as an async iterator
    of SSE lines, returned once the first token (or the first error) is known, so the
    transport can still answer an error with its status code."""

    def __init__(self, pipeline: Pipeline, settings: Settings):
        self.pipeline = pipeline
        self.settings = settings

    async def completion(
        self, ctx: CallContext, body: oa.CompletionRequest
    ) -> dict[str, Any] | AsyncIterator[str]:
        return await self._serve(ctx, body, chat=False)

    async def chat(
        self, ctx: CallContext, body: oa.ChatCompletionRequest
    ) -> dict[str, Any] | AsyncIterator[str]:
        return await self._serve(ctx, body, chat=True)

    async def _serve(
        self, ctx: CallContext, body: oa.CompletionRequest | oa.ChatCompletionRequest, chat: bool
    ) -> dict[str, Any] | AsyncIterator[str]:
        started = time.monotonic()
        name, version = split_model(body.model)
        runtime_request = body.to_runtime()
        estimate = (runtime_request.get("max_tokens") or 0) * body.n
        call = await self.pipeline.open(ctx, name, version, estimate=estimate)
        tools = _tool_names(body)
        gen = Generation(call, started, n=body.n, tools=tools, stream=body.stream)
        try:
            _check_generative(call.deployment, body.model)
            self._check_max_tokens(runtime_request.get("max_tokens"))
            runtime_request["max_tokens_cap"] = self.settings.max_tokens_ceiling
            runtime_request["deadline"] = time.time() + call.deadline.seconds
            events = call.generate(runtime_request)
            # Queued or prefilling, the client may leave before any token: the transport
            # cancels this wait, which cancels the sequence and gives its place back now.
            first = await _first_event(gen, events)
        except BaseException as exc:
            _settle_gauges(call.deployment)
            raise call.finish(exc) from None
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        shape = ResponseShape(rid, body.model, chat, logprobs=_wants_logprobs(body))
        if isinstance(body, oa.CompletionRequest) and body.echo:
            shape.echo = str(body.prompt)
        if body.stream:
            return _sse_stream(gen, first, events, shape, body.include_usage)
        return await _whole(gen, first, events, shape)

    def _check_max_tokens(self, max_tokens: int | None) -> None:
        ceiling = self.settings.max_tokens_ceiling
        if max_tokens is not None and max_tokens > ceiling:
            raise InvalidInput(
                f"max_tokens is {max_tokens}; the server allows at most {ceiling} "
                "(setting max_tokens_ceiling)",
                param="max_tokens",
            )


def _wants_logprobs(body: oa.CompletionRequest | oa.ChatCompletionRequest) -> bool:
    if isinstance(body, oa.ChatCompletionRequest):
        return bool(body.logprobs)
    return body.logprobs is not None


def _tool_names(body: oa.CompletionRequest | oa.ChatCompletionRequest) -> frozenset[str] | None:
    if not isinstance(body, oa.ChatCompletionRequest) or not body.calls_tools:
        return None
    return frozenset(t.function.name for t in body.tools or ())


def _check_generative(dep: Deployment, model: str) -> None:
    if not dep.spec.generative:
        raise InvalidInput(
            f"model {model!r} serves task {dep.spec.task!r}; this endpoint needs a "
            "text-generation model",
            param="model",
        )


async def _whole(
    gen: Generation, first: GenerationEvent, events: AsyncIterator, shape: ResponseShape
) -> dict[str, Any]:
    call = gen.call
    try:
        gen.take(first)
        async for event in events:
            gen.take(event)
    except BaseException as exc:
        raise call.finish(exc) from None
    finally:
        await events.aclose()
        _settle_gauges(gen.dep)
    call.finish()
    return shape.whole(gen)


async def _sse_stream(
    gen: Generation,
    first: GenerationEvent,
    events: AsyncIterator,
    shape: ResponseShape,
    usage: bool,
) -> AsyncIterator[str]:
    """The SSE lines of one stream; an error after the first token becomes an error chunk
    (the status line is long gone), and the stream always ends with ``[DONE]``."""
    call = gen.call
    try:
        for index in range(gen.n):
            for chunk in shape.opening(index):
                yield sse_line(chunk)
        event: GenerationEvent | None = first
        while event is not None:
            choice, content, _ = gen.take(event)
            line = shape.plain_line(choice, event, content)
            if line is not None:
                yield line
            else:
                for chunk in shape.pieces(choice, event, content):
                    yield sse_line(chunk)
            event = await anext(events, None)
        if usage:
            yield sse_line(shape.usage_chunk(gen))
    except AimassError as exc:
        error = call.finish(exc)
        yield sse_line({"error": _error_body(error)})
    except BaseException as exc:  # the client left: the sequence is cancelled by aclose
        call.finish(exc)
        raise
    else:
        call.finish()
    finally:
        await events.aclose()
        _settle_gauges(gen.dep)
    yield "data: [DONE]\n\n"


async def _first_event(gen: Generation, events: AsyncIterator[GenerationEvent]) -> GenerationEvent:
    """The first event that says something (text, an end, an error); gauge-only events before
    it are recorded and skipped, so a stream's status and headers wait for the first token."""
    try:
        async for event in events:
            if not event.only_stats:
                return event
            gen.take(event)
    except BaseException:
        await events.aclose()
        raise
    raise ModelFailed(f"model {gen.dep.spec.name!r} ended the stream without an answer")


def _settle_gauges(dep: Deployment) -> None:
    """Zero the model's gauges once none of its sequences is left.

    The replica reports its gauges on the events of live sequences; after the last one is
    cancelled there is no sequence left to carry them, and the last report would stay.
    """
    if not any(replica.busy for replica in dep.replicas):
        metrics_llm.record_idle(dep.spec.name, dep.spec.version)


def _error_body(exc: AimassError) -> dict[str, Any]:
    return {"message": exc.message, "type": exc.type, "param": exc.param, "code": exc.code}
