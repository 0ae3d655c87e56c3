"""OpenAI text generation on top of the engine: completions and chat, streamed or whole.

HTTP-free: a route hands a validated request and a ``CallContext`` here. The call goes through
the pipeline (authorization, deployment, deadline, usage), its runtime request is built from
the wire type, ``ModelCall.generate`` yields the replica's events, and they are shaped into an
OpenAI response, or into SSE chunks the transport streams. Leaving the event iterator early
(client gone, timeout) closes it, which makes the deployment cancel the sequence in its
replica at once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aimass import metrics_llm
from aimass.config import Settings
from aimass.engine.deployment import Deployment, GenerationEvent
from aimass.errors import AimassError, InvalidInput, ModelFailed
from aimass.protocols import openai as oa
from aimass.refs import split_model
from aimass.serving.pipeline import CallContext, ModelCall, Pipeline


@dataclass
class Generation:
    """What came back for one request, gathered while its events are consumed."""

    call: ModelCall
    started: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    last_text_at: float | None = None
    parts: list[str] = field(default_factory=list)

    @property
    def usage(self) -> oa.Usage:
        total = self.prompt_tokens + self.completion_tokens
        return oa.Usage(
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=total,
        )

    @property
    def dep(self) -> Deployment:
        return self.call.deployment

    def take(self, event: GenerationEvent) -> str:
        """Account one event (metrics, usage); return its text; raise its error if any."""
        spec = self.dep.spec
        if event.stats is not None:
            metrics_llm.record_stats(spec.name, spec.version, event.stats)
        if event.error is not None:
            raise event.error.exception()
        text = event.text
        if text:
            now = time.monotonic()
            if self.last_text_at is None:
                metrics_llm.record_first_token(spec.name, spec.version, now - self.started)
            else:
                metrics_llm.record_gap(spec.name, spec.version, now - self.last_text_at)
            self.last_text_at = now
        if event.finish_reason is not None:
            self.finish_reason = event.finish_reason
            if event.usage is not None:
                self.prompt_tokens = event.usage.prompt_tokens
                self.completion_tokens = event.usage.completion_tokens
            self.call.tokens(self.prompt_tokens, self.completion_tokens)
            metrics_llm.record_usage(
                spec.name, spec.version, self.prompt_tokens, self.completion_tokens
            )
        return text


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
        estimate = runtime_request.get("max_tokens") or 0
        call = await self.pipeline.open(ctx, name, version, estimate=estimate)
        gen = Generation(call, started)
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
        shape = _Shape(rid, body.model, chat)
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


def _check_generative(dep: Deployment, model: str) -> None:
    if not dep.spec.generative:
        raise InvalidInput(
            f"model {model!r} serves task {dep.spec.task!r}; this endpoint needs a "
            "text-generation model",
            param="model",
        )


async def _whole(
    gen: Generation, first: GenerationEvent, events: AsyncIterator, shape: _Shape
) -> dict[str, Any]:
    call = gen.call
    try:
        gen.parts.append(gen.take(first))
        async for event in events:
            gen.parts.append(gen.take(event))
    except BaseException as exc:
        raise call.finish(exc) from None
    finally:
        await events.aclose()
        _settle_gauges(gen.dep)
    call.finish()
    return shape.whole(gen)


async def _sse_stream(
    gen: Generation, first: GenerationEvent, events: AsyncIterator, shape: _Shape, usage: bool
) -> AsyncIterator[str]:
    """The SSE lines of one stream; an error after the first token becomes an error chunk
    (the status line is long gone), and the stream always ends with ``[DONE]``."""
    call = gen.call
    try:
        if shape.chat:
            yield _sse(shape.chunk({"role": "assistant", "content": ""}, None))
        event: GenerationEvent | None = first
        while event is not None:
            text = gen.take(event)
            if text:
                yield _sse(shape.chunk(text, None))
            event = await anext(events, None)
        yield _sse(shape.chunk("" if not shape.chat else {}, gen.finish_reason))
        if usage:
            yield _sse(shape.usage_chunk(gen))
    except AimassError as exc:
        error = call.finish(exc)
        yield _sse({"error": _error_body(error)})
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


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False, separators=(',', ':'))}\n\n"


@dataclass
class _Shape:
    """Builds the OpenAI objects of one response (ids, timestamps, chat vs. completion)."""

    rid: str
    model: str
    chat: bool
    created: int = field(default_factory=lambda: int(time.time()))

    def whole(self, gen: Generation) -> dict[str, Any]:
        text = "".join(gen.parts)
        if self.chat:
            choice = oa.ChatChoice(
                message=oa.AssistantMessage(content=text), finish_reason=gen.finish_reason
            )
            resp = oa.ChatCompletionResponse(
                id=self.rid, created=self.created, model=self.model, choices=[choice],
                usage=gen.usage,
            )  # fmt: skip
        else:
            choice = oa.CompletionChoice(text=text, finish_reason=gen.finish_reason)
            resp = oa.CompletionResponse(
                id=self.rid, created=self.created, model=self.model, choices=[choice],
                usage=gen.usage,
            )  # fmt: skip
        return resp.model_dump()

    def chunk(self, delta: str | dict, finish_reason: str | None) -> dict[str, Any]:
        if self.chat:
            body = delta if isinstance(delta, dict) else {"content": delta}
            choice = oa.ChatChunkChoice(delta=oa.ChatDelta(**body), finish_reason=finish_reason)
            return oa.ChatCompletionChunk(
                id=self.rid, created=self.created, model=self.model, choices=[choice]
            ).model_dump()
        choice = oa.CompletionChoice(text=str(delta), finish_reason=finish_reason)
        return oa.CompletionResponse(
            id=self.rid, created=self.created, model=self.model, choices=[choice]
        ).model_dump()

    def usage_chunk(self, gen: Generation) -> dict[str, Any]:
        cls = oa.ChatCompletionChunk if self.chat else oa.CompletionResponse
        return cls(
            id=self.rid, created=self.created, model=self.model, choices=[], usage=gen.usage
        ).model_dump()
