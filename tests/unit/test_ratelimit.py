"""Token buckets with a fake clock: admission, Retry-After, headers, changed limits."""

from __future__ import annotations

import pytest

from aimass.access.ratelimit import RateLimiter, format_reset
from aimass.errors import TooManyRequests


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_requests_per_minute(clock):
    rl = RateLimiter(clock)
    for left in (2, 1, 0):
        headers = rl.acquire(1, "k", 3, None, 0)
        assert headers["x-ratelimit-remaining-requests"] == str(left)
        assert headers["x-ratelimit-limit-requests"] == "3"
    with pytest.raises(TooManyRequests) as info:
        rl.acquire(1, "k", 3, None, 0)
    err = info.value
    assert err.status == 429 and "rpm" in err.message
    assert err.retry_after == pytest.approx(20.0)
    assert err.headers["Retry-After"] == "20"
    assert err.headers["x-ratelimit-remaining-requests"] == "0"
    assert err.headers["x-ratelimit-reset-requests"] == "1m0s"
    clock.t += 20
    rl.acquire(1, "k", 3, None, 0)


def test_keys_are_independent(clock):
    rl = RateLimiter(clock)
    rl.acquire(1, "a", 1, None, 0)
    rl.acquire(2, "b", 1, None, 0)
    with pytest.raises(TooManyRequests):
        rl.acquire(1, "a", 1, None, 0)


def test_tokens_per_minute_and_correction(clock):
    rl = RateLimiter(clock)
    headers = rl.acquire(1, "k", None, 600, 100)
    assert headers["x-ratelimit-remaining-tokens"] == "500"
    assert "x-ratelimit-limit-requests" not in headers
    rl.charge(1, 450)  # the request used 550 tokens, not 100
    with pytest.raises(TooManyRequests) as info:
        rl.acquire(1, "k", None, 600, 100)
    assert "tpm" in info.value.message
    assert info.value.retry_after == pytest.approx(5.0)  # 50 missing at 10 tokens/s
    clock.t += 5
    rl.acquire(1, "k", None, 600, 100)


def test_oversized_request_waits_for_a_full_bucket(clock):
    rl = RateLimiter(clock)
    rl.acquire(1, "k", None, 100, 1000)  # admitted from a full bucket, goes into debt
    with pytest.raises(TooManyRequests):
        rl.acquire(1, "k", None, 100, 1)


def test_refused_request_takes_nothing(clock):
    rl = RateLimiter(clock)
    rl.acquire(1, "k", 10, 60, 60)
    with pytest.raises(TooManyRequests) as info:
        rl.acquire(1, "k", 10, 60, 60)
    assert info.value.headers["x-ratelimit-remaining-requests"] == "9"
    clock.t += 1
    headers = rl.acquire(1, "k", 10, 60, 1)
    assert headers["x-ratelimit-remaining-requests"] == "8"
    assert headers["x-ratelimit-remaining-tokens"] == "0"


def test_limit_changes_apply_and_removal_forgets(clock):
    rl = RateLimiter(clock)
    rl.acquire(1, "k", 2, None, 0)
    rl.acquire(1, "k", 2, None, 0)
    with pytest.raises(TooManyRequests):
        rl.acquire(1, "k", 2, None, 0)
    assert rl.acquire(1, "k", 5, None, 0)["x-ratelimit-remaining-requests"] == "2"
    assert rl.acquire(1, "k", None, None, 0) == {}
    rl.retain(set())
    assert rl.acquire(1, "k", 1, None, 0)["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.0, "0ms"),
        (0.0171, "18ms"),
        (1.0, "1s"),
        (1.5, "1.5s"),
        (60.0, "1m0s"),
        (361.0, "6m1s"),
        (3 * 3600 + 61.0, "3h1m1s"),  # a token budget resets at the next day or month
    ],
)
def test_reset_format_matches_openai(seconds, text):
    assert format_reset(seconds) == text


def test_peek_reports_limits_without_taking_anything():
    rl = RateLimiter(clock=lambda: 0.0)
    assert rl.peek(1, None, None) == {}
    assert rl.peek(1, 2, None)["x-ratelimit-remaining-requests"] == "2"
    assert rl.peek(1, 2, None)["x-ratelimit-remaining-requests"] == "2"
    rl.acquire(1, "k", 2, None, 0)
    assert rl.peek(1, 2, None)["x-ratelimit-remaining-requests"] == "1"
