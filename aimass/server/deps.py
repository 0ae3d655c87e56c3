"""The seams every route uses: the engine, model access checks and usage recording.

Routes call ``check_model_access`` before touching a model and ``record_usage`` after; when
access control is configured (``app.state.gate``), these enforce keys, scopes and quotas,
otherwise they do nothing.
"""

from __future__ import annotations

from fastapi import Request

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


async def require_admin(request: Request) -> None:
    """Raise Unauthorized/Forbidden unless the caller holds an admin key (when auth is on)."""
    gate = getattr(request.app.state, "gate", None)
    if gate is not None:
        await gate.require_admin(request)


def audit(request: Request, action: str, target: str, result: str) -> None:
    """Append an admin action to the audit log (when access control is installed)."""
    gate = getattr(request.app.state, "gate", None)
    if gate is not None:
        gate.audit(request, action, target, result)


def visible(request: Request, model: str) -> bool:
    """Whether the caller's key may see ``model`` in listings (always, when auth is off)."""
    gate = getattr(request.app.state, "gate", None)
    return gate is None or gate.may_use(request, model)
