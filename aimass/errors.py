"""One error hierarchy for the whole platform, mapped to HTTP status in one place (``status``).

Engines and schedulers raise these; the transport layer renders them in each protocol's shape.
"""

from __future__ import annotations


class AimassError(Exception):
    """Base error: ``status`` is the HTTP status, ``code`` a stable machine-readable name."""

    status: int = 500
    code: str = "internal_error"
    type: str = "server_error"

    def __init__(self, message: str, *, param: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.message = message
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})

    def __reduce__(self):
        return (_rebuild, (type(self).__name__, self.message, self.param, self.headers))


class InvalidInput(AimassError):
    status, code, type = 400, "invalid_input", "invalid_request_error"


class Unauthorized(AimassError):
    status, code, type = 401, "invalid_api_key", "authentication_error"


class Forbidden(AimassError):
    status, code, type = 403, "model_not_allowed", "permission_error"


class AdminRequired(Forbidden):
    """An administrative action attempted with a key that is not an admin key (access control)."""

    code = "admin_required"


class UsageNotAllowed(Forbidden):
    """A key that is not an admin key asked for another key's usage."""

    code = "usage_not_allowed"


class NotFound(AimassError):
    status, code, type = 404, "not_found", "not_found_error"


class Conflict(AimassError):
    status, code, type = 409, "conflict", "invalid_request_error"


class PayloadTooLarge(AimassError):
    status, code, type = 413, "payload_too_large", "invalid_request_error"


class Unprocessable(AimassError):
    status, code, type = 422, "unprocessable", "invalid_request_error"


class TooManyRequests(AimassError):
    """Queue full or quota spent; ``retry_after`` seconds go out as ``Retry-After``."""

    status, code, type = 429, "rate_limited", "rate_limit_error"

    def __init__(self, message: str, *, retry_after: float = 1.0, **kw):
        super().__init__(message, **kw)
        self.retry_after = retry_after
        self.headers.setdefault("Retry-After", str(max(1, round(retry_after))))


class QueueFull(TooManyRequests):
    code = "queue_full"


class Unavailable(AimassError):
    status, code, type = 503, "unavailable", "server_error"


class DeadlineExceeded(AimassError):
    status, code, type = 504, "deadline_exceeded", "timeout_error"


class ModelFailed(AimassError):
    """A runtime raised an unexpected error while computing (not the client's fault)."""

    status, code, type = 500, "model_error", "server_error"


def _rebuild(name: str, message: str, param: str | None, headers: dict) -> AimassError:
    cls = _BY_NAME.get(name, AimassError)
    err = cls.__new__(cls)
    AimassError.__init__(err, message, param=param, headers=headers)
    if isinstance(err, TooManyRequests):
        err.retry_after = float(headers.get("Retry-After", 1))
    return err


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


_BY_NAME = {c.__name__: c for c in [AimassError, *_all_subclasses(AimassError)]}
