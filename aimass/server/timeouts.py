"""A client's own deadline: the ``Request-Timeout`` header, in seconds.

A client that will give up after a few seconds should not leave its work running for the
model's full ``limits.timeout_s``: the header shortens the deadline (never lengthens it;
``Deployment.deadline`` takes the smaller), and past it the answer is 504.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fastapi import Request

from aimass.errors import AimassError, DeadlineExceeded, InvalidInput

HEADER = "request-timeout"


def request_timeout_s(request: Request) -> float | None:
    """The header's value, or None when absent; 400 when it is not a positive finite number."""
    header = request.headers.get(HEADER)
    if header is None:
        return None
    try:
        value = float(header)
    except ValueError:
        raise InvalidInput(
            f"Request-Timeout header must be a number of seconds, got {header!r}",
            param="Request-Timeout",
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise InvalidInput(
            f"Request-Timeout header must be a positive, finite number of seconds, got {header!r}",
            param="Request-Timeout",
        )
    return value


@dataclass(frozen=True)
class Deadline:
    """How long a request may take and which setting said so, for a 504 that names it.

    The engine's own deadline errors name ``limits.timeout_s``; a client that sent a shorter
    ``Request-Timeout`` should read that its own header ended the request.
    """

    seconds: float
    source: str

    @classmethod
    def of(cls, limit_s: float, timeout_s: float | None) -> Deadline:
        if timeout_s is not None and timeout_s < limit_s:
            return cls(timeout_s, "the Request-Timeout header")
        return cls(limit_s, "limits.timeout_s")

    def explain(self, exc: AimassError) -> AimassError:
        """``exc`` itself, or for a deadline error one that names this deadline."""
        if not isinstance(exc, DeadlineExceeded):
            return exc
        return DeadlineExceeded(
            f"the request did not complete within {self.seconds:g} s ({self.source}); "
            "it was cancelled"
        )
