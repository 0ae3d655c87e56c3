"""Model references as clients write them: ``name``, ``name:version``, a version path segment.

One parser for every API, so a version is accepted or refused the same way everywhere: a
positive integer in ASCII digits (``"²"`` is a digit to ``str.isdigit``, not a version).
"""

from __future__ import annotations

from typing import Any

from aimass.errors import InvalidInput

MAX_VERSION = 2**31 - 1
"""The largest model version: the registry keeps versions in 32-bit integer columns
(PostgreSQL's INTEGER), so a larger one could never be registered or looked up."""


def parse_version(value: Any, what: str = "model version") -> int | None:
    """A version from a path segment, a ``name:version`` suffix or a JSON parameter.

    None (or an empty string) means "the newest ready version"; anything else must be a
    positive integer up to ``MAX_VERSION``, or an ``InvalidInput`` that names ``what``."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.isascii() and value.isdigit():
        number = int(value)
    else:
        raise InvalidInput(f"{what} must be a positive integer, got {value!r}", param=_param(what))
    if not 1 <= number <= MAX_VERSION:
        raise InvalidInput(
            f"{what} must be a positive integer up to {MAX_VERSION}, got {value!r}",
            param=_param(what),
        )
    return number


FINE_TUNED_PREFIX = "ft:"
"""Fine-tuned models are named ``ft:<base>:<suffix>:<id>`` as OpenAI names them: the only
names with colons, always three; a fourth colon starts a version."""


def split_model(ref: str) -> tuple[str, int | None]:
    """``name`` or ``name:version`` (only ``ft:`` names contain colons, exactly three)."""
    if ref.startswith(FINE_TUNED_PREFIX) and ref.count(":") >= 3:
        parts = ref.split(":", 4)
        name, version = ":".join(parts[:4]), parts[4] if len(parts) > 4 else None
        if version is None:
            return name, None
        return name, parse_version(version, f"the version after ':' in model {ref!r}")
    name, sep, version = ref.partition(":")
    if not sep:
        return name, None
    return name, parse_version(version, f"the version after ':' in model {ref!r}")


def _param(what: str) -> str | None:
    if what.startswith("parameters."):
        return what
    return "model" if "model" in what else None
