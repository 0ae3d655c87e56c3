"""Per-key request and token rate limits: two token buckets per key, kept in memory.

A bucket holds up to ``limit`` units and refills at ``limit`` per minute, so a key may burst
its whole minute at once and then proceeds at the steady rate. A request needs one request
unit and its estimated tokens (clamped to the bucket size, so a request larger than the
whole minute is admitted from a full bucket rather than never). After the request the
actual tokens replace the estimate; the bucket may go negative, which delays the next ones.
Nothing here blocks: state is updated under a lock in O(1).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from aimass.errors import TooManyRequests


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI's ``x-ratelimit-reset-*`` headers write it: ``20ms``, ``1.5s``,
    ``6m0s``; an hour or more (a token budget's period) as ``5h3m0s``, Go's duration style."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{round(seconds, 3):g}s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)}m{round(rest, 3):g}s"
    hours, minutes = divmod(minutes, 60)
    return f"{int(hours)}h{int(minutes)}m{round(rest):d}s"


@dataclass
class Bucket:
    """``limit`` units per minute; ``level`` is what is left at ``stamp``."""

    limit: int
    level: float
    stamp: float

    @property
    def rate(self) -> float:
        return self.limit / 60.0

    def at(self, now: float) -> float:
        return min(float(self.limit), self.level + (now - self.stamp) * self.rate)

    def settle(self, now: float) -> None:
        self.level, self.stamp = self.at(now), now

    def wait_for(self, need: float, now: float) -> float:
        """Seconds until ``need`` units are there (0 if already)."""
        return max(0.0, (need - self.at(now)) / self.rate)

    def reset_in(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.limit - self.at(now)) / self.rate)

    def resize(self, limit: int, now: float) -> None:
        """Apply a changed limit, keeping what was spent."""
        self.settle(now)
        self.level = min(float(limit), self.level + (limit - self.limit))
        self.limit = limit


class KeyLimits:
    """The buckets of one key; either may be absent (no limit of that kind)."""

    def __init__(self, rpm: int | None, tpm: int | None, now: float) -> None:
        self.requests = Bucket(rpm, float(rpm), now) if rpm else None
        self.tokens = Bucket(tpm, float(tpm), now) if tpm else None

    def update(self, rpm: int | None, tpm: int | None, now: float) -> None:
        self.requests = _resized(self.requests, rpm, now)
        self.tokens = _resized(self.tokens, tpm, now)

    def acquire(self, estimated_tokens: int, now: float, key_name: str) -> None:
        """Take one request and the estimated tokens, or raise 429 without taking anything."""
        waits: list[tuple[float, str]] = []
        if self.requests is not None:
            wait = self.requests.wait_for(1.0, now)
            if wait > 0:
                waits.append((wait, f"{self.requests.limit} requests per minute (rpm)"))
        need = 0.0
        if self.tokens is not None:
            need = min(float(estimated_tokens), float(self.tokens.limit)) or 1e-9
            wait = self.tokens.wait_for(need, now)
            if wait > 0:
                waits.append((wait, f"{self.tokens.limit} tokens per minute (tpm)"))
        if waits:
            wait, what = max(waits)
            raise TooManyRequests(
                f"rate limit of key {key_name!r} reached: {what}; retry in {wait:.2f}s",
                retry_after=wait,
                headers=self.headers(now),
            )
        if self.requests is not None:
            self.requests.settle(now)
            self.requests.level -= 1
        if self.tokens is not None and estimated_tokens:
            self.tokens.settle(now)
            self.tokens.level -= estimated_tokens

    def charge_tokens(self, delta: int, now: float) -> None:
        """Correct the token bucket by ``actual - estimated`` once a request is done."""
        if self.tokens is not None and delta:
            self.tokens.settle(now)
            self.tokens.level -= delta

    def headers(self, now: float) -> dict[str, str]:
        """OpenAI's ``x-ratelimit-*`` headers for the limits this key has."""
        out: dict[str, str] = {}
        for kind, bucket in (("requests", self.requests), ("tokens", self.tokens)):
            if bucket is not None:
                level = bucket.at(now)
                out[f"x-ratelimit-limit-{kind}"] = str(bucket.limit)
                out[f"x-ratelimit-remaining-{kind}"] = str(max(0, math.floor(level)))
                out[f"x-ratelimit-reset-{kind}"] = format_reset(
                    (bucket.limit - level) / bucket.rate
                )
        return out


def _resized(bucket: Bucket | None, limit: int | None, now: float) -> Bucket | None:
    if not limit:
        return None
    if bucket is None:
        return Bucket(limit, float(limit), now)
    if bucket.limit != limit:
        bucket.resize(limit, now)
    return bucket


class RateLimiter:
    """Buckets of every key, keyed by key id; limits follow the latest key snapshot."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[int, KeyLimits] = {}

    def acquire(
        self, key_id: int, key_name: str, rpm: int | None, tpm: int | None, estimated: int
    ) -> dict[str, str]:
        """Admit one request of a key (or raise 429); returns the headers to send back."""
        if not rpm and not tpm:
            return {}
        with self._lock:
            now = self._clock()
            limits = self._limits(key_id, rpm, tpm, now)
            limits.acquire(estimated, now, key_name)
            return limits.headers(now)

    def peek(self, key_id: int, rpm: int | None, tpm: int | None) -> dict[str, str]:
        """The headers of a key's limits, taking nothing: for a request another limit (the
        token budget) refuses, whose 429 should still say where the rate limits stand."""
        if not rpm and not tpm:
            return {}
        with self._lock:
            now = self._clock()
            return self._limits(key_id, rpm, tpm, now).headers(now)

    def charge(self, key_id: int, delta_tokens: int) -> None:
        with self._lock:
            limits = self._keys.get(key_id)
            if limits is not None:
                limits.charge_tokens(delta_tokens, self._clock())

    def retain(self, key_ids: set[int]) -> None:
        """Drop buckets of keys that no longer exist or lost their limits."""
        with self._lock:
            for gone in set(self._keys) - key_ids:
                del self._keys[gone]

    def _limits(self, key_id: int, rpm: int | None, tpm: int | None, now: float) -> KeyLimits:
        limits = self._keys.get(key_id)
        if limits is None:
            limits = self._keys[key_id] = KeyLimits(rpm, tpm, now)
        else:
            limits.update(rpm, tpm, now)
        return limits
