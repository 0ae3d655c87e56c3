"""The console's one guard: session → ``Authorization`` header, CSRF, and ``/ui/api`` mapping.

It sits outermost, before the access middleware, and touches only paths under ``/ui``:

- A request carrying a live session cookie gets ``Authorization: Bearer <the session's key>``
  (replacing any it sent), so the access middleware authenticates it exactly as an API call:
  same key, scopes, rate limits, usage and audit.
- Such a request that changes state (any method but GET/HEAD/OPTIONS) must carry the session's
  CSRF token in ``X-CSRF-Token``: the cookie alone, which a browser attaches by itself, proves
  nothing (403 otherwise). Requests that send their own key (no cookie) need no token.
- ``/ui/api/<path>`` is handed on as ``/<path>``: the console's forms and playground call the
  API's own routes, never a copy of them.
- A page asked for without a session (and without a key, while keys are required) is
  redirected to the sign-in page.
"""

from __future__ import annotations

from http.cookies import CookieError, SimpleCookie

from starlette.types import ASGIApp, Receive, Scope, Send

from aimass.access.gate import Gate
from aimass.errors import Forbidden
from aimass.server.errors import send_error
from aimass.server.ui.sessions import COOKIE, CSRF_HEADER, Session, SessionStore

PREFIX = "/ui"
API = "/ui/api"
SIGN_IN = "/ui/login"
STATIC = "/ui/static/"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SCOPE_SESSION = "aimass_console_session"


class CsrfRefused(Forbidden):
    code = "csrf_token_invalid"


def is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def session_of(scope: Scope) -> tuple[str, Session] | None:
    """The (id, session) the middleware found for this request, if any."""
    return scope.get("state", {}).get(SCOPE_SESSION)


class ConsoleMiddleware:
    def __init__(self, app: ASGIApp, sessions: SessionStore, gate: Gate) -> None:
        self.app = app
        self.sessions = sessions
        self.gate = gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_console(scope["path"]):
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        sid = _cookie(headers, COOKIE)
        session = self.sessions.get(sid)
        if session is not None:
            if scope["method"] not in SAFE_METHODS and not session.csrf_ok(
                _header(headers, CSRF_HEADER)
            ):
                err = CsrfRefused("missing or wrong CSRF token: send the page's X-CSRF-Token")
                await send_error(scope, send, err)
                return
            bearer = b"Bearer " + session.key.encode()
            headers = [(k, v) for k, v in headers if k != b"authorization"]
            scope = {**scope, "headers": [*headers, (b"authorization", bearer)]}
            scope.setdefault("state", {})[SCOPE_SESSION] = (sid, session)
        elif self._must_sign_in(scope):
            await _redirect(send, SIGN_IN)
            return
        await self.app(_api_mapped(scope), receive, send)

    def _must_sign_in(self, scope: Scope) -> bool:
        path = scope["path"]
        if path.startswith((API + "/", STATIC)) or path == SIGN_IN:
            return False
        return self.gate.enforced and _header(scope["headers"], "authorization") is None


def _api_mapped(scope: Scope) -> Scope:
    path = scope["path"]
    if not path.startswith(API + "/"):
        return scope
    inner = path[len(API) :]
    return {**scope, "path": inner, "raw_path": inner.encode()}


def _header(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    wanted = name.encode()
    for key, value in headers:
        if key == wanted:
            return value.decode("latin-1")
    return None


def _cookie(headers: list[tuple[bytes, bytes]], name: str) -> str | None:
    raw = _header(headers, "cookie")
    if not raw:
        return None
    jar = SimpleCookie()
    try:
        jar.load(raw)
    except CookieError:  # a malformed Cookie header is no session, not an error
        return None
    morsel = jar.get(name)
    return morsel.value if morsel else None


async def _redirect(send: Send, location: str) -> None:
    headers = [(b"location", location.encode()), (b"content-length", b"0")]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
