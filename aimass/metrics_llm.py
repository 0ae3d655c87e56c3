"""Prometheus metrics of text generation, labelled by model and version.

Recorded by the OpenAI serving layer from what it sees (first token, gaps between tokens)
and from the runtime's ``stats`` (running and waiting sequences, KV-cache cells in use). The
replica's worker loop puts fresh ``stats`` on the last event of every step, and after a
sequence is admitted or cancelled sends them on a live sequence's stream even when no token
came out; with no sequence left, the serving layer zeroes the gauges (``record_idle``).
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

_LABELS = ("model", "version")

TTFT = Histogram(
    "aimass_llm_time_to_first_token_seconds",
    "Time from request arrival to the first generated text",
    _LABELS,
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
INTER_TOKEN = Histogram(
    "aimass_llm_inter_token_latency_seconds",
    "Time between two streamed text pieces of one sequence",
    _LABELS,
    buckets=(0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5, 5),
)
GENERATED_TOKENS = Counter(
    "aimass_llm_generated_tokens_total", "Tokens generated (completion tokens)", _LABELS
)
PROMPT_TOKENS = Counter("aimass_llm_prompt_tokens_total", "Prompt tokens processed", _LABELS)
RUNNING = Gauge("aimass_llm_running_sequences", "Sequences decoding in a replica", _LABELS)
WAITING = Gauge("aimass_llm_waiting_sequences", "Sequences waiting for a slot", _LABELS)
KV_USED = Gauge("aimass_llm_kv_cache_used_cells", "KV-cache cells holding tokens", _LABELS)
KV_USAGE = Gauge("aimass_llm_kv_cache_usage_ratio", "KV-cache cells in use / total", _LABELS)


def _labels(name: str, version: int) -> dict[str, str]:
    return {"model": name, "version": str(version)}


def record_stats(name: str, version: int, stats: dict[str, Any]) -> None:
    """Set the gauges from a runtime's ``stats()`` snapshot (as carried in events)."""
    labels = _labels(name, version)
    RUNNING.labels(**labels).set(stats.get("running", 0))
    WAITING.labels(**labels).set(stats.get("waiting", 0))
    KV_USED.labels(**labels).set(stats.get("kv_used", 0))
    total = stats.get("kv_total") or 0
    KV_USAGE.labels(**labels).set(stats.get("kv_used", 0) / total if total else 0.0)


def record_idle(name: str, version: int) -> None:
    """No sequence of the model is running or waiting: nothing is left to report it."""
    record_stats(name, version, {})


def record_first_token(name: str, version: int, seconds: float) -> None:
    TTFT.labels(**_labels(name, version)).observe(seconds)


def record_gap(name: str, version: int, seconds: float) -> None:
    INTER_TOKEN.labels(**_labels(name, version)).observe(seconds)


def record_usage(name: str, version: int, prompt_tokens: int, completion_tokens: int) -> None:
    labels = _labels(name, version)
    PROMPT_TOKENS.labels(**labels).inc(prompt_tokens)
    GENERATED_TOKENS.labels(**labels).inc(completion_tokens)


def forget(name: str, version: int) -> None:
    """Drop an unloaded model's gauges."""
    for gauge in (RUNNING, WAITING, KV_USED, KV_USAGE):
        with contextlib.suppress(KeyError):
            gauge.remove(name, str(version))
