"""Console sessions: an opaque random id in a cookie stands for an API key kept in memory.

The key itself never leaves the server after sign-in: not in a cookie, a URL or a page. A
session ends when its owner signs out, after ``ttl_s`` without a request, or when the server
restarts (sessions are not persisted: signing in again costs one form).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field

COOKIE = "aimass_session"
LOGIN_COOKIE = "aimass_login"
"""A random value set with the sign-in form and echoed by it: a forged sign-in from another
site cannot read it (double-submit token before a session exists)."""
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


@dataclass
class Session:
    key: str
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    seen: float = 0.0

    def csrf_ok(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token, self.csrf)


class SessionStore:
    """Sessions by id, in memory, dropped after ``ttl_s`` idle seconds."""

    def __init__(self, ttl_s: float = 8 * 3600, clock: Callable[[], float] = time.monotonic):
        self.ttl_s = ttl_s
        self.clock = clock
        self._by_id: dict[str, Session] = {}

    def create(self, key: str) -> tuple[str, Session]:
        self._expire()
        sid = secrets.token_urlsafe(32)
        session = Session(key, seen=self.clock())
        self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        session = self._by_id.get(sid) if sid else None
        if session is None:
            return None
        now = self.clock()
        if now - session.seen > self.ttl_s:
            del self._by_id[sid]
            return None
        session.seen = now
        return session

    def drop(self, sid: str | None) -> None:
        self._by_id.pop(sid or "", None)

    def _expire(self) -> None:
        cutoff = self.clock() - self.ttl_s
        for sid in [s for s, v in self._by_id.items() if v.seen < cutoff]:
            del self._by_id[sid]


def store_of(state) -> SessionStore:
    """The app's session store (``app.state.console_sessions``), made on first use, so the
    middleware list can wrap any app, also one built without the console's pages."""
    store = getattr(state, "console_sessions", None)
    if store is None:
        store = state.console_sessions = SessionStore()
    return store
