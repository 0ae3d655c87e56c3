"""Auditing an admin action: one helper for the server and the command line alike.

An action is run, then recorded with its result (``ok``, or ``error <status>: <message>`` for
a refusal with an HTTP status, ``error: <message>`` otherwise), so a failed attempt is in the
log as surely as a successful one. The entry is written synchronously (durable before the
caller answers); the server runs it in a worker thread (``Gate.audited``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from aimass.errors import AimassError
from aimass.registry import audit as audit_log

Target = str | Callable[[], str]
"""What the action is about; a function when the target is only known once the action ran
(a name read from a body that may be refused)."""


def result_of(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, AimassError):
        return f"error {exc.status}: {exc.message}"
    return f"error: {getattr(exc, 'message', None) or exc}"


def record(url: str, *, actor: str, source: str, action: str, target: Target, result: str) -> None:
    name = target() if callable(target) else target
    audit_log.append(url, actor=actor, action=action, target=name, source=source, result=result)


@contextmanager
def audited(url: str, *, actor: str, source: str, action: str, target: Target) -> Iterator[None]:
    """Run the body as one audited action; its exception propagates after it is recorded."""
    try:
        yield
    except Exception as exc:
        record(url, actor=actor, source=source, action=action, target=target, result=result_of(exc))
        raise
    record(url, actor=actor, source=source, action=action, target=target, result="ok")
