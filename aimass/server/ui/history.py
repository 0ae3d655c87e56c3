"""A few minutes of the server's own metrics, sampled in process, for the console's charts.

Every ``interval_s`` the sampler reads the Prometheus metrics this process already keeps
(``aimass.metrics``, ``aimass.metrics_llm``) and stores, per model version, the counters'
differences since the previous sample: requests/s, tokens/s, the latency percentiles of the
requests that finished in that interval (from the histogram's buckets), and the queue depth.
No Prometheus server is involved; ``maxlen`` samples are kept (5 minutes at the default).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import dataclass

from aimass.metrics import LATENCY, QUEUE_DEPTH, REQUESTS
from aimass.metrics_llm import GENERATED_TOKENS

PERCENTILES = (0.5, 0.9, 0.99)


@dataclass
class _Reading:
    """Cumulative values of one model version at one instant."""

    requests: float = 0.0
    tokens: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()
    queue: float = 0.0


def _series(label: dict[str, str]) -> str:
    return f"{label['model']}:{label['version']}"


def read() -> dict[str, _Reading]:
    """Every model version's cumulative readings, now."""
    out: dict[str, _Reading] = {}

    def of(labels: dict[str, str]) -> _Reading:
        return out.setdefault(_series(labels), _Reading())

    for sample in _samples(REQUESTS, "_total"):
        of(sample.labels).requests += sample.value
    for sample in _samples(GENERATED_TOKENS, "_total"):
        of(sample.labels).tokens += sample.value
    for sample in _samples(QUEUE_DEPTH, ""):
        of(sample.labels).queue = sample.value
    buckets: dict[str, list[tuple[float, float]]] = {}
    for sample in _samples(LATENCY, "_bucket"):
        if sample.labels.get("stage") == "total":
            bound = float(sample.labels["le"])
            buckets.setdefault(_series(sample.labels), []).append((bound, sample.value))
    for series, pairs in buckets.items():
        out.setdefault(series, _Reading()).buckets = tuple(sorted(pairs))
    return out


def _samples(metric, suffix: str):
    for family in metric.collect():
        for sample in family.samples:
            if sample.name == family.name + suffix:
                yield sample


def percentile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of a histogram's cumulative ``(upper bound, count)`` pairs,
    interpolated linearly inside its bucket, as Prometheus's ``histogram_quantile``."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


def difference(now: _Reading, before: _Reading | None, seconds: float) -> dict:
    """One model version's rates and percentiles between two readings."""
    before = before or _Reading()
    old = dict(before.buckets)
    window = [(b, c - old.get(b, 0.0)) for b, c in now.buckets]
    point = {
        "rps": max(now.requests - before.requests, 0.0) / seconds,
        "tokens_per_s": max(now.tokens - before.tokens, 0.0) / seconds,
        "queue": now.queue,
    }
    for q in PERCENTILES:
        value = percentile(window, q)
        point[f"p{round(q * 100)}_ms"] = None if value is None else value * 1000.0
    return point


class MetricsHistory:
    """Samples taken every ``interval_s`` by a background task, the newest ``maxlen`` kept."""

    def __init__(self, interval_s: float = 2.0, maxlen: int = 150) -> None:
        self.interval_s = interval_s
        self.samples: deque[dict] = deque(maxlen=maxlen)
        self._last: tuple[float, dict[str, _Reading]] | None = None
        self._task: asyncio.Task | None = None

    def take(self) -> None:
        """Add one sample (the differences since the previous call)."""
        now, readings = time.monotonic(), read()
        if self._last is not None:
            then, previous = self._last
            seconds = max(now - then, 1e-3)
            models = {s: difference(r, previous.get(s), seconds) for s, r in readings.items()}
            self.samples.append({"t": time.time(), "models": models})
        self._last = (now, readings)

    def ensure_started(self) -> None:
        """Start sampling on the running loop (the first time the console asks for charts)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            self.take()
            await asyncio.sleep(self.interval_s)
