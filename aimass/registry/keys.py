"""API keys: create, verify, list, update, rotate, revoke.

A key looks like ``am-<public id>-<secret>``. The public id (12 hex characters) finds the row;
the database holds only the SHA-256 of the whole key. Keys carry ~256 random bits, so a plain
fast hash is enough (no password stretching needed) and verification stays in microseconds;
the digest comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from aimass.errors import Conflict, InvalidInput, NotFound
from aimass.registry.db import session_scope
from aimass.registry.tables import ApiKey, utcnow
from aimass.spec import NAME_PATTERN

PREFIX = "am"
PERIODS = ("day", "month")
_DURATION = re.compile(r"^\s*(\d{1,10})\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
MAX_LIMIT = 2**31 - 1
"""Largest ``rpm``, ``tpm`` and ``budget_tokens``: they are kept in 32-bit integer columns
(PostgreSQL's INTEGER)."""


@dataclass(frozen=True)
class KeyInfo:
    """A snapshot of one key row, safe to cache: it holds the digest, never the key."""

    id: int
    name: str
    public_id: str
    secret_hash: str
    models: frozenset[str] | None
    """Model names the key may use; ``None`` means every model."""
    admin: bool
    rpm: int | None
    tpm: int | None
    budget_tokens: int | None
    budget_period: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def allows(self, model: str) -> bool:
        return self.models is None or model in self.models

    def state(self, now: datetime | None = None) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= (now or utcnow()):
            return "expired"
        return "active"

    def matches(self, key: str) -> bool:
        """Constant-time check of a presented key against the stored digest."""
        return hmac.compare_digest(hash_key(key), self.secret_hash)

    def public_dict(self) -> dict:
        """What may be shown to people and APIs: everything but the digest."""
        return {
            "name": self.name,
            "id": self.public_id,
            "models": "all" if self.models is None else sorted(self.models),
            "admin": self.admin,
            "rpm": self.rpm,
            "tpm": self.tpm,
            "budget_tokens": self.budget_tokens,
            "budget_period": self.budget_period,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.expires_at),
            "revoked_at": _iso(self.revoked_at),
            "state": self.state(),
        }


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def public_id_of(key: str) -> str | None:
    """The lookup id embedded in a key, or None if the string is not shaped like one of ours."""
    parts = key.split("-", 2)
    if len(parts) != 3 or parts[0] != PREFIX or len(parts[1]) != 12 or not parts[2]:
        return None
    return parts[1]


def new_key() -> tuple[str, str]:
    """A fresh ``(public_id, key)`` pair."""
    public_id = secrets.token_hex(6)
    return public_id, f"{PREFIX}-{public_id}-{secrets.token_urlsafe(32)}"


def parse_duration(text: str) -> timedelta:
    """``30d``, ``12h``, ``90m``, ``2w``, ``45s`` → timedelta; refused if it would end after
    the last date a datetime holds (year 9999)."""
    m = _DURATION.match(text)
    if not m or int(m.group(1)) <= 0:
        raise InvalidInput(f"expires must look like 30d, 12h, 90m, 2w or 45s, got {text!r}")
    try:
        delta = timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    except OverflowError:
        delta = timedelta.max
    if delta >= datetime.max - utcnow():
        raise InvalidInput(f"expires is too far in the future: {text!r}", param="expires")
    return delta


def parse_models(text: str | None) -> frozenset[str] | None:
    """``all`` (or nothing) → None; ``a,b`` → {a, b}."""
    if text is None or text.strip().lower() in ("", "all", "*"):
        return None
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    for n in names:
        if not re.fullmatch(NAME_PATTERN, n):
            raise InvalidInput(f"models: {n!r} is not a valid model name")
    return names


def create_key(
    url: str,
    name: str,
    *,
    models: frozenset[str] | None = None,
    admin: bool = False,
    rpm: int | None = None,
    tpm: int | None = None,
    budget_tokens: int | None = None,
    budget_period: str | None = None,
    expires_in: timedelta | None = None,
) -> tuple[KeyInfo, str]:
    """Store a new key and return it; the clear key exists only in this return value."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise InvalidInput(f"name: {name!r} must match {NAME_PATTERN}", param="name")
    _check_limits(rpm, tpm, budget_tokens, budget_period)
    public_id, key = new_key()
    with session_scope(url) as s:
        if s.scalar(select(ApiKey.id).where(ApiKey.name == name)) is not None:
            raise Conflict(f"a key named {name!r} already exists (revoked keys keep their name)")
        row = ApiKey(
            name=name,
            public_id=public_id,
            secret_hash=hash_key(key),
            models=_models_text(models),
            admin=admin,
            rpm=rpm,
            tpm=tpm,
            budget_tokens=budget_tokens,
            budget_period=budget_period if budget_tokens else None,
            created_at=utcnow(),
            expires_at=utcnow() + expires_in if expires_in else None,
        )
        s.add(row)
        s.flush()
        return _info(row), key


def update_key(url: str, name: str, **changes: object) -> KeyInfo:
    """Change scope or limits of a key (``rpm=None`` removes the limit); running servers see it
    at their next key refresh (about 2 s)."""
    allowed = {"models", "admin", "rpm", "tpm", "budget_tokens", "budget_period", "expires_in"}
    unknown = set(changes) - allowed
    if unknown:
        raise InvalidInput(f"cannot update {sorted(unknown)}")
    with session_scope(url) as s:
        row = _get(s, name)
        for field in ("admin", "rpm", "tpm", "budget_tokens", "budget_period"):
            if field in changes:
                setattr(row, field, changes[field])
        if "models" in changes:
            row.models = _models_text(changes["models"])  # type: ignore[arg-type]
        if "expires_in" in changes:
            delta = changes["expires_in"]
            row.expires_at = utcnow() + delta if isinstance(delta, timedelta) else None
        _check_limits(row.rpm, row.tpm, row.budget_tokens, row.budget_period)
        return _info(row)


def rotate_key(url: str, name: str) -> tuple[KeyInfo, str]:
    """Replace the secret (and public id) of a key; the old key stops working."""
    public_id, key = new_key()
    with session_scope(url) as s:
        row = _get(s, name)
        if row.revoked_at is not None:
            raise Conflict(f"key {name!r} is revoked; create a new key instead")
        row.public_id, row.secret_hash, row.rotated_at = public_id, hash_key(key), utcnow()
        return _info(row), key


def revoke_key(url: str, name: str) -> KeyInfo:
    """Mark a key revoked (kept for usage history and audit). Revoking twice is harmless."""
    with session_scope(url) as s:
        row = _get(s, name)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
        return _info(row)


def list_keys(url: str) -> list[KeyInfo]:
    with session_scope(url) as s:
        return [_info(r) for r in s.scalars(select(ApiKey).order_by(ApiKey.id))]


def get_key(url: str, name: str) -> KeyInfo:
    with session_scope(url) as s:
        return _info(_get(s, name))


def find_by_public_id(url: str, public_id: str) -> KeyInfo | None:
    with session_scope(url) as s:
        row = s.scalar(select(ApiKey).where(ApiKey.public_id == public_id))
        return _info(row) if row else None


def has_admin_key(url: str) -> bool:
    """Whether at least one admin key is usable now (not revoked, not expired)."""
    return any(k.admin and k.state() == "active" for k in list_keys(url))


def _get(s, name: str) -> ApiKey:
    row = s.scalar(select(ApiKey).where(ApiKey.name == name))
    if row is None:
        raise NotFound(f"no key named {name!r}")
    return row


def _check_limits(rpm: int | None, tpm: int | None, budget: int | None, period: str | None) -> None:
    for field, value in (("rpm", rpm), ("tpm", tpm), ("budget_tokens", budget)):
        if value is not None and not 0 < value <= MAX_LIMIT:
            raise InvalidInput(f"{field} must be a positive integer up to {MAX_LIMIT}", param=field)
    if budget is not None and period not in PERIODS:
        raise InvalidInput("budget_tokens needs --period day or month", param="budget_period")


def _models_text(models: frozenset[str] | None) -> str:
    return "*" if models is None else ",".join(sorted(models))


def _info(row: ApiKey) -> KeyInfo:
    models = None if row.models == "*" else frozenset(m for m in row.models.split(",") if m)
    return KeyInfo(
        id=row.id,
        name=row.name,
        public_id=row.public_id,
        secret_hash=row.secret_hash,
        models=models,
        admin=bool(row.admin),
        rpm=row.rpm,
        tpm=row.tpm,
        budget_tokens=row.budget_tokens,
        budget_period=row.budget_period,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") + "Z" if value else None
