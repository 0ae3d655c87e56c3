"""The seams every route uses: the engine, model access checks and usage recording.

Routes call ``check_model_access`` before touching a model and ``record_usage`` after; when
access control is configured (``app.state.gate``), these enforce keys, scopes and quotas,
otherwise they do nothing.
"""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from aimass import metrics
from aimass.engine.deployment import READY, Deployment
from aimass.engine.manager import ModelManager


def manager(request: Request) -> ModelManager:
    return request.app.state.manager


async def check_model_access(request: Request, model: str, estimated_tokens: int = 0) -> None:
    """Raise Unauthorized/Forbidden/TooManyRequests if the caller may not use ``model`` now."""
    gate = getattr(request.app.state, "gate", None)
    if gate is not None:
        await gate.check_model(request, model, estimated_tokens)


def record_usage(
    request: Request,
    model: str,
    *,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    error: bool = False,
) -> None:
    """Count a finished request against the caller's quotas and usage; never blocks."""
    gate = getattr(request.app.state, "gate", None)
    if gate is not None:
        gate.record(request, model, prompt_tokens, completion_tokens, error)


def record_refusal(
    request: Request, model: str, version: str | None, status: int, *, usage: bool = True
) -> None:
    """Count a request refused before ``Deployment.infer`` ran (bad version, not loaded, bad
    body or shape, scope or quota): ``Deployment.infer`` counts only what reaches it, so without
    this usage ``errors`` and ``aimass_requests_total`` would miss these.

    Only models this server has loaded are counted: a client-chosen unknown name (or version)
    must not create usage rows or metric labels without bound. ``usage=False`` when the gate
    already counted the refusal in the key's usage (scope, rate and budget refusals)."""
    versions = [d for d in manager(request).deployments() if d.spec.name == model]
    if not versions:
        return
    if usage:
        record_usage(request, model, error=True)
    dep = _labelled(versions, version)
    if dep is not None:
        labels = metrics.labels(model, dep.spec.version)
        metrics.REQUESTS.labels(**labels, status=str(status)).inc()


def _labelled(versions: list[Deployment], version: str | None) -> Deployment | None:
    """The version a refused request is counted under: the one it named if loaded, else the
    one ``ModelManager.get`` would pick; None for a named version that is not loaded."""
    if version:
        return next((d for d in versions if str(d.spec.version) == version), None)
    ready = [d for d in versions if d.state == READY]
    return (ready or versions)[-1]


async def require_admin(request: Request) -> None:
    """Raise Unauthorized/Forbidden unless the caller holds an admin key (when auth is on)."""
    gate = getattr(request.app.state, "gate", None)
    if gate is not None:
        await gate.require_admin(request)


async def audit(request: Request, action: str, target: str, result: str) -> None:
    """Append an admin action to the audit log (when access control is installed).

    The append is a synchronous database transaction (durable before the answer goes out), so
    it runs in a worker thread: a slow database must not stall every other request."""
    gate = getattr(request.app.state, "gate", None)
    if gate is not None:
        await run_in_threadpool(gate.audit, request, action, target, result)


def visible(request: Request, model: str) -> bool:
    """Whether the caller's key may see ``model`` in listings (always, when auth is off)."""
    gate = getattr(request.app.state, "gate", None)
    return gate is None or gate.may_use(request, model)
