"""A client's own deadline: the ``Request-Timeout`` header, in seconds.

A client that will give up after a few seconds should not leave its work running for the
model's full ``limits.timeout_s``: the header shortens the deadline (never lengthens it;
``Deployment.deadline`` takes the smaller), and past it the answer is 504.
"""

from __future__ import annotations

import math

from starlette.requests import Request

from aimass.errors import InvalidInput

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
