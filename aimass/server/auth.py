"""Access control: API keys, model scopes, rate limits, token budgets, usage and audit.

``install_access_control(app, settings)`` puts a ``Gate`` on ``app.state.gate`` and adds an
ASGI middleware that authenticates every request (except health probes) before any route
runs. Routes reach the gate only through ``deps.check_model_access`` / ``deps.record_usage``,
``require_admin`` and ``audit``.

Keys are cached in memory by public id and re-read from the database every ``REFRESH_S``
seconds (with the usage flush), so revocations and limit changes made by the CLI or another
server apply within seconds; a key created a moment ago is found by a one-row lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from aimass.access.ratelimit import RateLimiter, format_reset
from aimass.config import Settings
from aimass.errors import AdminRequired, AimassError, Forbidden, TooManyRequests, Unauthorized
from aimass.registry import audit as audit_log
from aimass.registry.access import ANONYMOUS_KEY_ID, ANONYMOUS_NAME
from aimass.registry.keys import KeyInfo, find_by_public_id, has_admin_key, list_keys, public_id_of
from aimass.registry.usage import (
    Counts,
    UsageBuffer,
    period_bounds,
    today,
    tokens_since,
    write_usage,
)
from aimass.server.asgi_errors import send_error

log = logging.getLogger("aimass.auth")

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
PUBLIC_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/health", "/healthz"})
"""Liveness/readiness probes answer without a key; everything else (``/metrics`` included)
needs one when auth is on."""

REFRESH_S = 2.0
FAILURE_WINDOW_S = 60.0
MAX_FAILURE_DELAY_S = 5.0
_MAX_TRACKED = 10_000


class StartupRefused(AimassError):
    """The server must not start with these settings (it would be open to the network)."""

    code = "startup_refused"


def is_loopback(host: str) -> bool:
    return host in LOOPBACK


def auth_enforced(settings: Settings) -> bool:
    """Whether every request needs a valid key.

    ``require_auth`` decides when set; otherwise keys are required on any non-loopback address
    unless ``insecure`` is given (an explicitly open server, e.g. behind a trusted gateway).
    """
    if settings.require_auth is not None:
        return settings.require_auth
    return not is_loopback(settings.host) and not settings.insecure


def check_startup(settings: Settings) -> None:
    """Refuse to serve a non-loopback address without protection, unless ``--insecure``."""
    if is_loopback(settings.host) or settings.insecure:
        return
    if settings.require_auth is False:
        raise StartupRefused(
            f"refusing to serve {settings.host} with require_auth off: pass --insecure to run "
            "an open server on a network address"
        )
    if not has_admin_key(settings.resolved_database_url):
        raise StartupRefused(
            f"refusing to serve {settings.host} without an admin API key: create one with "
            "`aimass keys create --name admin --admin`, or pass --insecure to run an open server"
        )


@dataclass
class Caller:
    """Who sent the request (``key`` None: no key, auth off) and what its limits reported."""

    key: KeyInfo | None
    source: str
    estimated_tokens: int = 0
    rate_headers: dict[str, str] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        return self.key.name if self.key else "anonymous"


class Gate:
    """Keys, scopes, limits and usage of one server process."""

    def __init__(self, settings: Settings, clock=time.monotonic) -> None:
        self.settings = settings
        self.url = settings.resolved_database_url
        self.enforced = auth_enforced(settings)
        self._clock = clock
        self._keys: dict[str, KeyInfo] = {}
        self._misses: dict[str, float] = {}
        self._failures: dict[str, tuple[int, float]] = {}
        self.limiter = RateLimiter(clock)
        self.usage = UsageBuffer()
        self._budget_db: dict[int, int] = {}
        self._unsynced: dict[int, int] = {}
        self._task: asyncio.Task | None = None
        self._flush_lock: asyncio.Lock | None = None
        self.started = False

    # ---- life cycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load keys and start the flush/refresh loop (idempotent)."""
        if not self.started:
            self.started = True
            self._flush_lock = asyncio.Lock()
            await self.sync()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop the loop and write every pending counter (clean shutdown loses nothing)."""
        task, self._task = self._task, None
        if task is not None:
            async with self._lock():  # never cancel the loop in the middle of a write
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.sync()

    def _lock(self) -> asyncio.Lock:
        if self._flush_lock is None:
            self._flush_lock = asyncio.Lock()
        return self._flush_lock

    async def _loop(self) -> None:
        flush_every = self.settings.usage_flush_interval_s
        tick = min(flush_every, REFRESH_S)
        last_flush = self._clock()
        while True:
            await asyncio.sleep(tick)
            flush = self._clock() - last_flush >= flush_every - 1e-3
            try:
                await self.sync(flush=flush)
            except Exception:
                log.exception("access control: usage flush or key refresh failed; will retry")
            if flush:
                last_flush = self._clock()

    async def sync(self, flush: bool = True) -> None:
        """Write pending usage (``flush``), then re-read keys and budget usage from the
        database; under one lock, so budgets never count a flushed batch twice or not at all."""
        async with self._lock():
            batch = self.usage.take() if flush else {}
            sent = _tokens_by_key(batch)
            try:
                await run_in_threadpool(write_usage, self.url, batch)
            except Exception:
                self.usage.put_back(batch)
                raise
            keys = await run_in_threadpool(list_keys, self.url)
            firsts = {
                k.id: period_bounds(k.budget_period)[0].isoformat()
                for k in keys
                if k.budget_tokens and k.budget_period
            }
            used = await run_in_threadpool(tokens_since, self.url, firsts)
            self._apply(keys, used, sent)

    def _apply(self, keys: list[KeyInfo], used: dict[int, int], sent: dict[int, int]) -> None:
        self._keys = {k.public_id: k for k in keys}
        self._misses.clear()
        self._budget_db = used
        for key_id, n in sent.items():
            left = self._unsynced.get(key_id, 0) - n
            if left:
                self._unsynced[key_id] = left
            else:
                self._unsynced.pop(key_id, None)
        self.limiter.retain({k.id for k in keys if k.rpm or k.tpm})

    # ---- authentication -------------------------------------------------------------------

    async def authenticate(self, headers: list[tuple[bytes, bytes]], source: str) -> Caller:
        """The caller of a request, or Unauthorized (after a delay for repeat offenders)."""
        token = _bearer(headers)
        if token is None:
            if self.enforced:
                await self._fail(source, "missing API key: send 'Authorization: Bearer <key>'")
            return Caller(None, source)
        key = await self._find(token)
        if key is None or not key.matches(token):
            if self.enforced:
                await self._fail(source, "invalid API key")
            return Caller(None, source)
        state = key.state()
        if state != "active":
            if self.enforced:
                await self._fail(source, f"API key is {state}")
            return Caller(None, source)
        return Caller(key, source)

    async def _find(self, token: str) -> KeyInfo | None:
        public_id = public_id_of(token)
        if public_id is None:
            return None
        key = self._keys.get(public_id)
        if key is not None:
            return key
        now = self._clock()
        if now - self._misses.get(public_id, -REFRESH_S) < REFRESH_S:
            return None
        key = await run_in_threadpool(find_by_public_id, self.url, public_id)
        if key is None:
            if len(self._misses) >= _MAX_TRACKED:
                self._misses.clear()
            self._misses[public_id] = now
        else:
            self._keys[public_id] = key
        return key

    async def _fail(self, source: str, reason: str) -> None:
        """Count a failure from ``source``, wait longer the more recent failures it has, raise."""
        now = self._clock()
        count, last = self._failures.get(source, (0, now))
        if now - last > FAILURE_WINDOW_S:
            count = 0
        if len(self._failures) >= _MAX_TRACKED and source not in self._failures:
            self._failures.clear()
        self._failures[source] = (count + 1, now)
        log.warning("authentication failed from %s: %s", source, reason)
        delay = min(MAX_FAILURE_DELAY_S, self.settings.auth_failure_delay_s * count)
        if delay > 0:
            await asyncio.sleep(delay)
        raise Unauthorized(reason)

    # ---- per-model checks, used by routes through aimass.server.deps ----------------------

    async def check_model(self, request: Request, model: str, estimated_tokens: int = 0) -> None:
        """Scope, budget and rate limits of the caller for one use of ``model``."""
        caller = await self.caller(request)
        key = caller.key
        if key is None:
            return
        try:
            if not key.allows(model):
                raise Forbidden(f"API key {key.name!r} may not use model {model!r}", param="model")
            budget = self._check_budget(key, estimated_tokens)
            try:
                rate = self.limiter.acquire(key.id, key.name, key.rpm, key.tpm, estimated_tokens)
            except TooManyRequests as err:
                err.headers = _with_budget(err.headers, budget)
                raise
            caller.rate_headers = _with_budget(rate, budget)
        except AimassError:
            counted = model if _served(request, model) else UNKNOWN_MODEL
            self.usage.add((key.id, key.name, counted, today()), Counts(1, 0, 0, 1))
            raise
        caller.estimated_tokens = estimated_tokens

    def _check_budget(self, key: KeyInfo, estimated: int) -> dict[str, str]:
        """Refuse (429) a request the key's token budget cannot cover; otherwise return the
        budget's ``x-ratelimit-*-tokens`` headers after this request (empty: no budget)."""
        if not key.budget_tokens or not key.budget_period:
            return {}
        used = self._budget_db.get(key.id, 0) + self._unsynced.get(key.id, 0)
        wait = (period_bounds(key.budget_period)[1] - datetime.now(UTC)).total_seconds()
        if used + estimated > key.budget_tokens:
            headers = _budget_headers(key.budget_tokens, used, wait)
            raise TooManyRequests(
                f"token budget of API key {key.name!r} is spent: {used} of {key.budget_tokens} "
                f"tokens used this {key.budget_period} (budget_tokens)",
                retry_after=wait,
                headers={**self.limiter.peek(key.id, key.rpm, key.tpm), **headers},
            )
        return _budget_headers(key.budget_tokens, used + estimated, wait)

    def record(
        self, request: Request, model: str, prompt_tokens: int, completion_tokens: int, error: bool
    ) -> None:
        """Count one finished request; memory only, written by the next flush."""
        caller = _caller_of(request)
        key = caller.key if caller else None
        key_id, name = (key.id, key.name) if key else (ANONYMOUS_KEY_ID, ANONYMOUS_NAME)
        tokens = prompt_tokens + completion_tokens
        counts = Counts(1, prompt_tokens, completion_tokens, int(error))
        self.usage.add((key_id, name, model, today()), counts)
        if key is not None:
            self.limiter.charge(key.id, tokens - caller.estimated_tokens)
            caller.estimated_tokens = tokens
            if tokens:
                self._unsynced[key.id] = self._unsynced.get(key.id, 0) + tokens

    async def caller(self, request: Request) -> Caller:
        """The caller the middleware found, or authenticate now (middleware not installed)."""
        caller = _caller_of(request)
        if caller is None:
            host = request.client.host if request.client else ""
            caller = await self.authenticate(request.scope.get("headers", []), host)
            request.scope.setdefault("state", {})["aimass_caller"] = caller
        return caller

    def is_admin(self, caller: Caller | None) -> bool:
        if caller is None or caller.key is None:
            return not self.enforced
        return caller.key.admin

    # ---- admin actions (through aimass.server.deps) -------------------------------------

    async def require_admin(self, request: Request) -> None:
        """Raise unless the caller may administer the server (an admin key, or auth off and no
        key sent); a refusal is written to the audit log."""
        caller = await self.caller(request)
        if self.is_admin(caller):
            return
        action = f"{request.method} {request.url.path}"
        await run_in_threadpool(self.audit, request, action, "", "denied")
        raise AdminRequired(f"{action} needs an admin API key")

    def audit(self, request: Request, action: str, target: str, result: str = "ok") -> None:
        """Append one admin action by this request's caller to the audit log (durable on
        return)."""
        caller = _caller_of(request)
        audit_log.append(
            self.url,
            actor=caller.actor if caller else "anonymous",
            action=action,
            target=target,
            source=request.client.host if request.client else "",
            result=result,
        )

    def may_use(self, request: Request, model: str) -> bool:
        """Whether the caller may see/use ``model`` (listings: /v1/models, repository index)."""
        caller = _caller_of(request)
        return caller is None or caller.key is None or caller.key.allows(model)


def _budget_headers(budget: int, used: int, reset_s: float) -> dict[str, str]:
    """OpenAI's token headers for a token budget: it resets when the next period starts."""
    return {
        "x-ratelimit-limit-tokens": str(budget),
        "x-ratelimit-remaining-tokens": str(max(0, budget - used)),
        "x-ratelimit-reset-tokens": format_reset(reset_s),
    }


def _with_budget(rate: dict[str, str], budget: dict[str, str]) -> dict[str, str]:
    """One set of token headers, from whichever token limit binds: the budget when the key has
    no ``tpm``, or when less of the budget is left than of the minute's tokens."""
    if not budget:
        return rate
    tpm_left = rate.get("x-ratelimit-remaining-tokens")
    if tpm_left is None or int(budget["x-ratelimit-remaining-tokens"]) < int(tpm_left):
        return {**rate, **budget}
    return rate


UNKNOWN_MODEL = "(unknown model)"
"""Usage rows of refusals for model names this server does not serve go under this name, so a
key cannot add rows without bound by asking for made-up models."""


def _served(request: Request, model: str) -> bool:
    manager = getattr(request.app.state, "manager", None)
    if manager is None:
        return True
    return any(d.spec.name == model for d in manager.deployments())


def _caller_of(request: Request) -> Caller | None:
    return request.scope.get("state", {}).get("aimass_caller")


def _tokens_by_key(batch: dict) -> dict[int, int]:
    out: dict[int, int] = {}
    for (key_id, *_), counts in batch.items():
        if key_id != ANONYMOUS_KEY_ID:
            out[key_id] = out.get(key_id, 0) + counts.tokens
    return out


def _bearer(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if scheme.lower() == "bearer" and token else None
    return None


# ---- middleware ---------------------------------------------------------------------------


class AccessMiddleware:
    """Authenticates every HTTP request, adds ``x-ratelimit-*`` headers, and runs the gate's
    start/stop with the app's lifespan."""

    def __init__(self, app, gate: Gate) -> None:
        self.app = app
        self.gate = gate

    async def __call__(self, scope, receive, send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self.app(scope, receive, self._lifespan_send(send))
            return
        if kind not in ("http", "websocket") or scope["path"] in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        if not self.gate.started:
            await self.gate.start()
        client = scope.get("client")
        try:
            caller = await self.gate.authenticate(scope["headers"], client[0] if client else "")
        except AimassError as err:
            if kind == "websocket":  # refuse the handshake (policy violation)
                await send({"type": "websocket.close", "code": 1008})
            else:
                await send_error(scope, send, err)
            return
        scope.setdefault("state", {})["aimass_caller"] = caller
        key = caller.key
        if key is not None and (key.rpm or key.tpm or key.budget_tokens):
            send = _with_rate_headers(send, caller)
        await self.app(scope, receive, send)

    def _lifespan_send(self, send):
        async def wrapped(message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await self.gate.start()
            elif message["type"] == "lifespan.shutdown.complete":
                await self.gate.stop()
            await send(message)

        return wrapped


def _with_rate_headers(send, caller: Caller):
    async def wrapped(message) -> None:
        if message["type"] == "http.response.start" and caller.rate_headers:
            present = {k.lower() for k, _ in message.get("headers", [])}
            extra = [
                (k.encode(), v.encode())
                for k, v in caller.rate_headers.items()
                if k.encode() not in present
            ]
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return wrapped


def install_access_control(app, settings: Settings) -> None:
    """Create the gate (``app.state.gate``) and its middleware. Call once in ``create_app``,
    after ``install_limits`` so authentication runs first (outermost)."""
    gate = Gate(settings)
    app.state.gate = gate
    app.add_middleware(AccessMiddleware, gate=gate)


# ---- helpers for routes that hold the request (see also aimass.server.deps) ---------------


async def require_admin(request: Request) -> None:
    """``Gate.require_admin`` when access control is installed; nothing otherwise."""
    gate: Gate | None = getattr(request.app.state, "gate", None)
    if gate is not None:
        await gate.require_admin(request)


@contextlib.asynccontextmanager
async def audited(request: Request, action: str, target: str) -> AsyncIterator[None]:
    """Run an admin action and record it with ``ok`` or ``error: <message>``; the database
    write runs in a worker thread so it never blocks the event loop."""
    gate: Gate = request.app.state.gate
    try:
        yield
    except Exception as exc:
        result = f"error: {getattr(exc, 'message', None) or exc}"
        await run_in_threadpool(gate.audit, request, action, target, result)
        raise
    await run_in_threadpool(gate.audit, request, action, target, "ok")
