"""The access gate: API keys, model scopes, rate limits, token budgets, usage and audit.

HTTP-free: it works on a ``Caller`` (who sent a request, from where), so the HTTP middleware
(``server/auth.py``), the serving pipeline (``serving/pipeline.py``), the CLI and later the batch
runner and a Ray gateway all use the same rules.

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

from aimass.access import audit
from aimass.access.ratelimit import RateLimiter, format_reset
from aimass.config import Settings
from aimass.errors import AdminRequired, AimassError, Forbidden, TooManyRequests, Unauthorized
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
                await asyncio.to_thread(write_usage, self.url, batch)
            except Exception:
                self.usage.put_back(batch)
                raise
            keys = await asyncio.to_thread(list_keys, self.url)
            firsts = {
                k.id: period_bounds(k.budget_period)[0].isoformat()
                for k in keys
                if k.budget_tokens and k.budget_period
            }
            used = await asyncio.to_thread(tokens_since, self.url, firsts)
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
        key = await asyncio.to_thread(find_by_public_id, self.url, public_id)
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

    # ---- per-model checks (serving/pipeline.py) --------------------------------------------

    async def authorize(
        self, caller: Caller, model: str, estimated_tokens: int = 0, *, served: bool = True
    ) -> None:
        """Scope, budget and rate limits of ``caller`` for one use of ``model``.

        A refusal is counted in the key's usage; under ``UNKNOWN_MODEL`` when the server does not
        serve ``model`` (``served``), so made-up names cannot grow usage rows without bound."""
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
            counted = model if served else UNKNOWN_MODEL
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
        self,
        caller: Caller | None,
        model: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        error: bool = False,
    ) -> None:
        """Count one finished request; memory only, written by the next flush."""
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

    def is_admin(self, caller: Caller | None) -> bool:
        if caller is None or caller.key is None:
            return not self.enforced
        return caller.key.admin

    # ---- admin actions ---------------------------------------------------------------------

    async def require_admin(self, caller: Caller | None, action: str) -> None:
        """Raise unless the caller may administer the server (an admin key, or auth off and no
        key sent); a refusal is written to the audit log."""
        if self.is_admin(caller):
            return
        await asyncio.to_thread(self.audit, caller, action, "", "denied")
        raise AdminRequired(f"{action} needs an admin API key")

    def audit(self, caller: Caller | None, action: str, target: str, result: str = "ok") -> None:
        """Append one admin action by ``caller`` to the audit log (durable on return)."""
        audit.record(self.url, **_who(caller), action=action, target=target, result=result)

    @contextlib.asynccontextmanager
    async def audited(
        self, caller: Caller | None, action: str, target: audit.Target
    ) -> AsyncIterator[None]:
        """``access.audit.audited`` for a server request: the write runs in a worker thread so
        a slow database never blocks the event loop."""
        who = _who(caller)
        try:
            yield
        except Exception as exc:
            result = audit.result_of(exc)
            await asyncio.to_thread(
                audit.record, self.url, **who, action=action, target=target, result=result
            )
            raise
        await asyncio.to_thread(
            audit.record, self.url, **who, action=action, target=target, result="ok"
        )

    def may_use(self, caller: Caller | None, model: str) -> bool:
        """Whether the caller may see/use ``model`` (listings: /v1/models, repository index)."""
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


def _who(caller: Caller | None) -> dict[str, str]:
    if caller is None:
        return {"actor": "anonymous", "source": ""}
    return {"actor": caller.actor, "source": caller.source}


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
