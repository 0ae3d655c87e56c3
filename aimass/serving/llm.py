"""OpenAI text generation on top of the engine: completions and chat, streamed or whole.

The route hands a validated request here; this module picks the deployment, turns the
request into the runtime's plain dict, drives ``Deployment.generate`` and shapes its events
into OpenAI responses or SSE chunks. Leaving the event iterator early (client gone, timeout)
closes it, which makes the deployment cancel the sequence in its replica at once.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from aimass import errors, metrics_llm
from aimass.engine.deployment import Deployment
from aimass.errors import AimassError, InvalidInput, ModelFailed
from aimass.protocols import openai as oa
from aimass.server.deps import check_model_access, record_usage
from aimass.server.disconnect import ClientDisconnected, unless_disconnected
from aimass.server.timeouts import Deadline, request_timeout_s

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class Generation:
    """What came back for one request, gathered while its events are consumed."""

    dep: Deployment
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

    def take(self, data: dict[str, Any]) -> str:
        """Account one event (metrics, usage); return its text; raise its error if any."""
        spec = self.dep.spec
        if "stats" in data:
            metrics_llm.record_stats(spec.name, spec.version, data["stats"])
        if "error" in data:
            raise _error_from(data["error"])
        text = data.get("text", "")
        if text:
            now = time.monotonic()
            if self.last_text_at is None:
                metrics_llm.record_first_token(spec.name, spec.version, now - self.started)
            else:
                metrics_llm.record_gap(spec.name, spec.version, now - self.last_text_at)
            self.last_text_at = now
        if "finish_reason" in data:
            self.finish_reason = data["finish_reason"]
            usage = data.get("usage", {})
            self.prompt_tokens = usage.get("prompt_tokens", 0)
            self.completion_tokens = usage.get("completion_tokens", 0)
            metrics_llm.record_usage(
                spec.name, spec.version, self.prompt_tokens, self.completion_tokens
            )
        return text


def _error_from(err: dict[str, Any]) -> AimassError:
    cls = getattr(errors, str(err.get("type")), None)
    if not (isinstance(cls, type) and issubclass(cls, AimassError)):
        cls = ModelFailed
    return cls(str(err.get("message", "generation failed")))


class OpenAIServing:
    """Completions and chat for one request; cheap to build per request."""

    def __init__(self, request: Request):
        self.request = request
        self.manager = request.app.state.manager
        self.settings = request.app.state.settings
        self.deadline = Deadline(0.0, "limits.timeout_s")

    async def completion(self, body: oa.CompletionRequest) -> Any:
        return await self._serve(body, chat=False)

    async def chat(self, body: oa.ChatCompletionRequest) -> Any:
        return await self._serve(body, chat=True)

    async def _serve(self, body: oa.CompletionRequest | oa.ChatCompletionRequest, chat: bool):
        started = time.monotonic()
        dep = self._deployment(body.model)
        timeout_s = request_timeout_s(self.request)
        runtime_request = body.to_runtime()
        self._check_max_tokens(runtime_request.get("max_tokens"))
        runtime_request["max_tokens_cap"] = self.settings.max_tokens_ceiling
        await check_model_access(self.request, body.model, runtime_request.get("max_tokens") or 0)
        self.deadline = Deadline.of(dep.spec.limits.timeout_s, timeout_s)
        runtime_request["deadline"] = time.time() + self.deadline.seconds
        gen = Generation(dep, started)
        events = dep.generate(runtime_request, timeout_s=timeout_s)
        try:
            # Queued or prefilling, the client may leave before any token: watch it here too,
            # so its queue place or slot is given back now, not when its answer would be done.
            first = await unless_disconnected(self.request, _first_event(gen, events))
        except ClientDisconnected:  # the wait was cancelled, which cancelled the sequence
            _settle_gauges(dep)
            record_usage(self.request, body.model, error=True)
            return Response(status_code=499)
        except AimassError as exc:
            _settle_gauges(dep)
            record_usage(self.request, body.model, error=True)
            raise self.deadline.explain(exc) from None
        rid = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]
        shape = _Shape(rid, body.model, chat)
        if body.stream:
            stream = self._sse(gen, first, events, shape, body.include_usage)
            return StreamingResponse(stream, media_type="text/event-stream", headers=SSE_HEADERS)
        return await self._whole(gen, first, events, shape)

    def _deployment(self, model: str) -> Deployment:
        dep = self.manager.get(model)
        if not dep.spec.generative:
            raise InvalidInput(
                f"model {model!r} serves task {dep.spec.task!r}; this endpoint needs a "
                "text-generation model",
                param="model",
            )
        return dep

    def _check_max_tokens(self, max_tokens: int | None) -> None:
        ceiling = self.settings.max_tokens_ceiling
        if max_tokens is not None and max_tokens > ceiling:
            raise InvalidInput(
                f"max_tokens is {max_tokens}; the server allows at most {ceiling} "
                "(setting max_tokens_ceiling)",
                param="max_tokens",
            )

    # whole answers

    async def _whole(self, gen: Generation, first: dict, events: AsyncIterator, shape: _Shape):
        try:
            await unless_disconnected(self.request, self._collect(gen, first, events))
        except ClientDisconnected:  # collecting was cancelled, which cancelled the sequence
            record_usage(self.request, shape.model, error=True, **_tokens(gen))
            return Response(status_code=499)
        except AimassError as exc:
            record_usage(self.request, shape.model, error=True, **_tokens(gen))
            raise self.deadline.explain(exc) from None
        record_usage(self.request, shape.model, **_tokens(gen))
        return JSONResponse(shape.whole(gen))

    async def _collect(self, gen: Generation, first: dict, events: AsyncIterator) -> None:
        try:
            gen.parts.append(gen.take(first))
            async for data in events:
                gen.parts.append(gen.take(data))
        finally:
            await events.aclose()
            _settle_gauges(gen.dep)

    # streams

    async def _sse(
        self, gen: Generation, first: dict, events: AsyncIterator, shape: _Shape, usage: bool
    ) -> AsyncIterator[str]:
        failed = False
        try:
            if shape.chat:
                yield _sse(shape.chunk({"role": "assistant", "content": ""}, None))
            data: dict | None = first
            while data is not None:
                text = gen.take(data)
                if text:
                    yield _sse(shape.chunk(text, None))
                data = await anext(events, None)
            yield _sse(shape.chunk("" if not shape.chat else {}, gen.finish_reason))
            if usage:
                yield _sse(shape.usage_chunk(gen))
        except AimassError as exc:
            failed = True
            yield _sse({"error": _error_body(self.deadline.explain(exc))})
        finally:
            await events.aclose()
            _settle_gauges(gen.dep)
            record_usage(self.request, shape.model, error=failed, **_tokens(gen))
        yield "data: [DONE]\n\n"


async def _first_event(gen: Generation, events: AsyncIterator[dict]) -> dict[str, Any]:
    """The first event that says something (text, an end, an error); gauge-only events before
    it are recorded and skipped, so a stream's status and headers wait for the first token."""
    try:
        async for data in events:
            if data.keys() - {"stats"}:
                return data
            gen.take(data)
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


def _tokens(gen: Generation) -> dict[str, int]:
    return {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens}


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
