"""Names the access-control code shares about usage rows that belong to no key.

The tables themselves (``ApiKey``, ``UsageDay``, ``AuditEntry``) live in ``registry/tables.py``.
"""

from __future__ import annotations

ANONYMOUS_KEY_ID = 0
"""``key_id`` of usage rows for requests made without a key (auth off)."""

ANONYMOUS_NAME = "(anonymous)"
"""Display name of those rows; not a valid key name, so it cannot clash with one."""
