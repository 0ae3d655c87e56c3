"""The one path every model call takes, whatever API or transport it came from.

A call is: authorize the caller for the model (scope, rate, token budget), find the deployment,
admit the request (a full queue refuses before any work), run it under the caller's deadline,
then count it once, as a success with its tokens or as an error, in the caller's usage and in the
model's request metrics. Routes (``aimass.server``), and later the batch runner and a Ray
gateway, hand a ``CallContext`` to a service; the service opens a ``ModelCall`` here. Nothing in
this module knows HTTP.

Two counting rules live here and nowhere else:
- a refusal before the deployment ran (bad version, model not loaded, bad body) is counted in
  usage and ``aimass_requests_total``; what reaches the deployment is counted by the deployment;
- a model name the server does not serve never creates a usage row or metric label of its own
  (the gate counts such refusals under one ``(unknown model)`` row), so a client cannot grow
  either without bound by inventing names.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from aimass import metrics
from aimass.access.gate import Caller, Gate
from aimass.engine.deployment import Deployment, GenerationEvent, Payload
from aimass.engine.manager import ModelManager
from aimass.errors import AimassError, DeadlineExceeded


@dataclass
class CallContext:
    """Who is calling and how long they will wait: all a service needs from the transport."""

    caller: Caller
    timeout_s: float | None = None
    """The client's own deadline in seconds (``Request-Timeout``, v2 ``timeout``); it may only
    shorten the model's ``limits.timeout_s``."""
    timeout_source: str = "the Request-Timeout header"
    """Where ``timeout_s`` came from, named in the 504 it causes."""
    background: bool = False
    """Work that yields to online calls (vector store ingestion, batch lines): the batcher
    serves online requests first."""


@dataclass(frozen=True)
class Deadline:
    """How long a request may take and which setting said so, for a 504 that names it."""

    seconds: float
    source: str

    @classmethod
    def of(cls, limit_s: float, ctx: CallContext) -> Deadline:
        if ctx.timeout_s is not None and ctx.timeout_s < limit_s:
            return cls(ctx.timeout_s, ctx.timeout_source)
        return cls(limit_s, "limits.timeout_s")

    def explain(self, exc: BaseException) -> BaseException:
        """``exc`` itself, or for a deadline error one that names this deadline."""
        if not isinstance(exc, DeadlineExceeded):
            return exc
        return DeadlineExceeded(
            f"the request did not complete within its deadline of {self.seconds:g} s "
            f"({self.source}); it was cancelled"
        )


class Pipeline:
    """Opens model calls against one engine and one gate; one per server."""

    def __init__(self, manager: ModelManager, gate: Gate):
        self.manager = manager
        self.gate = gate
        self._online: dict[str, int] = {}
        self._online_ended: dict[str, float] = {}

    def online(self, name: str, within_s: float = 0.0) -> bool:
        """Whether online (not background) calls of model ``name`` are open now, or one ended
        less than ``within_s`` ago: background work such as a batch gives way to them."""
        if self._online.get(name):
            return True
        ended = self._online_ended.get(name)
        return ended is not None and time.monotonic() - ended < within_s

    def serves(self, name: str) -> bool:
        return any(d.spec.name == name for d in self.manager.deployments())

    async def open(
        self, ctx: CallContext, name: str, version: int | None = None, *, estimate: int = 0
    ) -> ModelCall:
        """Authorize ``ctx.caller`` for ``name`` and find the deployment; raise the refusal.

        The returned call must be finished (``finish`` or ``async with``) exactly once. A
        version's ``alias`` is the version it names, authorized and counted as that model."""
        name, version = self.manager.resolve(name, version)
        call = ModelCall(self, ctx, name, version, estimate)
        try:
            await self.gate.authorize(ctx.caller, name, estimate, served=self.serves(name))
        except AimassError as exc:
            call.refused(exc, usage=False)  # the gate counted it in the caller's usage
            raise
        try:
            call.deployment = self.manager.get(name, version)
        except AimassError as exc:
            call.refused(exc)
            raise
        return call

    async def resolve(self, ctx: CallContext, name: str, version: int | None = None) -> Deployment:
        """The deployment ``ctx.caller`` may look at (metadata, readiness): authorized like a
        call, but not a use of the model, so nothing is recorded beyond the gate's refusals. A
        routed name is described by its main version, not a random one."""
        name, version = self.manager.resolve(name, version)
        await self.gate.authorize(ctx.caller, name, served=self.serves(name))
        return self.manager.get(name, version, choose=False)

    def call(
        self, ctx: CallContext, name: str, version: int | None = None, *, estimate: int = 0
    ) -> _Opening:
        """``async with pipeline.call(ctx, name) as call:`` — open, run, finish."""
        return _Opening(self, ctx, name, version, estimate)


class ModelCall:
    """One use of one model by one caller, from admission to its usage record."""

    deployment: Deployment

    def __init__(
        self,
        pipeline: Pipeline,
        ctx: CallContext,
        name: str,
        version: int | None,
        estimate: int,
    ):
        self._pipeline = pipeline
        self.ctx = ctx
        self.name = name
        self.version = version
        self.estimate = estimate
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self._reached = False
        self._finished = False
        self._online = not ctx.background
        if self._online:
            pipeline._online[name] = pipeline._online.get(name, 0) + 1

    def _settle(self, served: bool = True) -> None:
        """Mark the call finished (once), and no longer online; ``served``: it reached a
        deployment (only served names are remembered, so invented ones cannot grow a dict)."""
        self._finished = True
        if self._online:
            self._online = False
            if served:
                self._pipeline._online_ended[self.name] = time.monotonic()
            left = self._pipeline._online[self.name] - 1
            if left:
                self._pipeline._online[self.name] = left
            else:
                del self._pipeline._online[self.name]

    @property
    def deadline(self) -> Deadline:
        return Deadline.of(self.deployment.spec.limits.timeout_s, self.ctx)

    def admit(self) -> None:
        """Refuse now (429/503) what the deployment would refuse when queueing; transports call
        this before reading a large body."""
        self.deployment.admit()

    async def infer(self, payload: Payload) -> Payload:
        """Run one batched request on the deployment, under the caller's deadline."""
        self._reached = True
        try:
            return await self.deployment.infer(
                payload, timeout_s=self.ctx.timeout_s, background=self.ctx.background
            )
        except DeadlineExceeded as exc:
            raise self.deadline.explain(exc) from None

    def generate(self, request: dict[str, Any]) -> AsyncIterator[GenerationEvent]:
        """Stream one generation from the deployment, under the caller's deadline."""
        self._reached = True
        return self.deployment.generate(request, timeout_s=self.ctx.timeout_s)

    def tokens(self, prompt: int = 0, completion: int = 0) -> None:
        """What the call consumed so far (recorded in usage when it finishes)."""
        self.prompt_tokens, self.completion_tokens = prompt, completion

    def refused(self, exc: AimassError, *, usage: bool = True) -> None:
        """Count a refusal that happened before the deployment ran (see the module note)."""
        self._settle(served=False)
        versions = [d for d in self._pipeline.manager.deployments() if d.spec.name == self.name]
        if not versions:
            return
        if usage:
            self._pipeline.gate.record(self.ctx.caller, self.name, error=True)
        dep = _labelled(self._pipeline.manager, versions, self.version)
        if dep is not None:
            labels = metrics.labels(self.name, dep.spec.version)
            metrics.REQUESTS.labels(**labels, status=str(exc.status)).inc()

    def finish(self, exc: BaseException | None = None) -> BaseException | None:
        """Record the call once: a success, or an error (a refusal if it never ran). Returns the
        exception to raise in place of ``exc`` (a deadline error names the deadline)."""
        if self._finished:
            return exc
        if exc is not None and not self._reached and isinstance(exc, AimassError):
            self.refused(exc)
            return exc
        self._settle()
        self._pipeline.gate.record(
            self.ctx.caller,
            self.name,
            self.prompt_tokens,
            self.completion_tokens,
            error=exc is not None,
        )
        if exc is None or isinstance(exc, asyncio.CancelledError | GeneratorExit):
            return exc
        return self.deadline.explain(exc)


class _Opening:
    """The async context manager behind ``Pipeline.call``."""

    def __init__(self, pipeline: Pipeline, ctx, name, version, estimate):
        self._args = (pipeline, ctx, name, version, estimate)
        self._call: ModelCall | None = None

    async def __aenter__(self) -> ModelCall:
        pipeline, ctx, name, version, estimate = self._args
        self._call = await pipeline.open(ctx, name, version, estimate=estimate)
        return self._call

    async def __aexit__(self, exc_type, exc, tb) -> bool:
        replacement = self._call.finish(exc)
        if replacement is not None and replacement is not exc:
            raise replacement from None
        return False


def _labelled(
    manager: ModelManager, versions: list[Deployment], version: int | None
) -> Deployment | None:
    """The version a refused request is counted under: the one it named if loaded, else the
    one a plain name mostly goes to (``ModelManager.primary``: its route, or the newest ready
    version); None for a named version that is not loaded."""
    if version is not None:
        return next((d for d in versions if d.spec.version == version), None)
    return manager.primary(versions[0].spec.name)
